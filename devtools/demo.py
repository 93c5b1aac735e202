"""The demo: the whole product on one machine, on real registries.

    ./scripts/demo            (bootstrap, then: .venv/bin/python -m devtools.demo)

Starts two real registries (parent and connected, Debian's docker-registry),
the portal (gunicorn), a Celery worker and Celery beat, with their data in
.var/demo/ (wiped at each start); fills the parent with real images; creates
the registry and a connected registry with the `acr` command; syncs; shows the
parent's and the child's manifest digests side by side; pushes a new tag and
shows it arrive through continuous sync. Ctrl-C or SIGTERM stops everything.

Environment: PORT (default 8000) for the portal; REDIS_URL to use Redis as
the Celery broker (default: a file broker in .var/demo/portal, no server).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtools import images
from devtools.processes import start_registry, stop_process, wait_for_port

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = BASE_DIR / ".var" / "demo"
REGISTRY_NAME = "demoregistry"
CONNECTED_NAME = "factoryfloor01"
SYNCED_REPOS = ["hello-world", "app/frontend", "tools/busybox"]

# The services, exactly as docker-compose.yml runs them (there the programs are
# on PATH; here they are run from this virtualenv). gunicorn's address comes
# from GUNICORN_CMD_ARGS in both places.
SERVICE_COMMANDS = {
    "web": ["gunicorn", "registry_portal.wsgi", "--workers", "2", "--timeout", "60",
            "--access-logfile", "-"],
    "worker": ["celery", "-A", "registry_portal", "worker", "-l", "info", "--concurrency", "2"],
    "beat": ["celery", "-A", "registry_portal", "beat", "-l", "info"],
}


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _on_signal(signum, frame):
    # Further signals during the clean-up are ignored: it ends by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def say(text: str = "") -> None:
    print(text, flush=True)


def venv_bin(program: str) -> str:
    """The program from this interpreter's environment (the .venv), else PATH."""
    candidate = Path(sys.executable).parent / program
    return str(candidate) if candidate.exists() else (shutil.which(program) or program)


class Demo:
    def __init__(self):
        self.services: dict[str, subprocess.Popen] = {}
        self.registries = []
        self.port = int(os.environ.get("PORT", "8000"))
        self.data_dir = DEMO_DIR / "portal"
        self.log_dir = DEMO_DIR / "logs"
        env = {k: v for k, v in os.environ.items() if k != "REGISTRY_AUTH_FILE"}
        # The demo has a database of its own (SQLite in its data dir), fresh each run.
        env.pop("DATABASE_URL", None)
        env["PORTAL_DATA_DIR"] = str(self.data_dir)
        env["DJANGO_SETTINGS_MODULE"] = "registry_portal.settings"
        env["PYTHONUNBUFFERED"] = "1"
        # Continuous sync shows within seconds in the demo.
        env.setdefault("PORTAL_DISPATCH_INTERVAL", "5")
        env.setdefault("PORTAL_CONTINUOUS_INTERVAL", "15")
        self.env = env

    # --- processes --------------------------------------------------------
    def manage(self, *args: str, check: bool = True, echo: bool = True, extra_env: dict | None = None,
               timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "manage.py", *args]
        if echo:
            say(f"$ python manage.py {' '.join(_quote(a) for a in args)}")
        proc = subprocess.Popen(cmd, cwd=BASE_DIR, env={**self.env, **(extra_env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            stop_process(proc, timeout=5)
            raise
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if echo:
            for line in (out + err).rstrip().splitlines():
                say(f"  {line}")
        if check and proc.returncode != 0:
            raise RuntimeError(f"python manage.py {args[0]} failed with exit {proc.returncode}")
        return result

    def start_service(self, name: str, extra_env: dict | None = None) -> subprocess.Popen:
        cmd = SERVICE_COMMANDS[name]
        argv = [venv_bin(cmd[0]), *cmd[1:]]
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, cwd=BASE_DIR, env={**self.env, **(extra_env or {})},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.services[name] = proc
        say(f"  {name:<7} pid {proc.pid}: {' '.join(cmd)}   (log: {self._rel(self.log_dir / f'{name}.log')})")
        return proc

    def stop_all(self) -> None:
        say("\nStopping ...")
        for name in ("beat", "web", "worker"):
            proc = self.services.get(name)
            if proc is not None:
                stop_process(proc, timeout=15)
                say(f"  {name} stopped")
        for label, reg in self.registries:
            reg.stop()
            say(f"  {label} registry stopped")

    def check_services(self) -> None:
        for name, proc in self.services.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}; end of its log:\n{tail}")

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(BASE_DIR))
        except ValueError:
            return str(path)

    # --- the story --------------------------------------------------------
    def run(self) -> None:
        # Refuse before touching anything: a second demo must not wipe the
        # data of one that is running.
        self._lock = _take_demo_lock()
        if _port_busy(self.port):
            raise RuntimeError(f"port {self.port} is in use: set PORT to a free port")
        if DEMO_DIR.exists():
            shutil.rmtree(DEMO_DIR)
        self.log_dir.mkdir(parents=True)
        self.data_dir.mkdir(parents=True)
        broker = "Redis at REDIS_URL" if self.env.get("REDIS_URL") else "file broker in " + self._rel(self.data_dir)
        say(f"Registry Portal demo: data in {self._rel(DEMO_DIR)}, SQLite database, Celery broker: {broker}\n")

        say("1. Two real registries (CNCF distribution)")
        parent = start_registry(DEMO_DIR / "parent-registry")
        self.registries.append(("parent", parent))
        child = start_registry(DEMO_DIR / "connected-registry")
        self.registries.append(("connected", child))
        say(f"  parent    {parent.url}\n  connected {child.url}\n")

        say("2. The portal's database and static files")
        self.manage("migrate", "--noinput", echo=False)
        self.manage("collectstatic", "--noinput", echo=False)
        password = secrets.token_urlsafe(12)
        # The password goes through the environment, never a command line or a log.
        self.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.invalid",
                    echo=False, extra_env={"DJANGO_SUPERUSER_PASSWORD": password})
        say("  migrated, static files collected, superuser 'admin' created\n")

        say("3. Services")
        if _port_busy(self.port):
            raise RuntimeError(f"port {self.port} is in use: set PORT to a free port")
        self.start_service("worker")
        self.start_service("beat")
        self.start_service("web", extra_env={"GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port}"})
        wait_for_port(self.port, timeout=30, proc=self.services["web"])
        portal_url = f"http://127.0.0.1:{self.port}/"
        say("")

        say("4. Real images in the parent (built from busybox, pushed with skopeo)")
        t0 = time.monotonic()
        pushed = images.populate(parent.host, images.demo_dataset())
        say(f"  {len(pushed)} tags in {len({p.repo for p in pushed})} repositories "
            f"in {time.monotonic() - t0:.1f} s: " + ", ".join(p.spec.ref for p in pushed) + "\n")

        say("5. The registry and its connected registry, with the acr command")
        self.manage("acr", "create", "--name", REGISTRY_NAME, "--login-server", parent.url,
                    "--data-endpoint-enabled")
        self.manage("acr", "connected-registry", "create", "--registry", REGISTRY_NAME, "--name", CONNECTED_NAME,
                    "--repository", *SYNCED_REPOS, "--login-server", child.url)
        t0 = time.monotonic()
        resync = self.manage("acr", "connected-registry", "resync", "--registry", REGISTRY_NAME,
                             "--name", CONNECTED_NAME, "--wait", "--timeout", "300", check=False)
        if resync.returncode != 0:
            say(f"  (resync ended with exit {resync.returncode}; see {self._rel(self.log_dir / 'worker.log')})")
        say(f"  sync finished in {time.monotonic() - t0:.1f} s\n")
        self.check_services()

        say("6. Byte for byte: manifest digests, sha256 of `skopeo inspect --raw` on each side")
        self.compare(parent, child, [p for p in pushed if p.repo in SYNCED_REPOS])
        not_synced = sorted({p.repo for p in pushed} - set(SYNCED_REPOS))
        say(f"  not selected, so not on the child: {', '.join(not_synced)} "
            f"(child has: {', '.join(_catalog(child)) or 'nothing'})\n")

        say(f"Portal:  {portal_url}")
        say(f"Login:   admin / {password}")
        say(f"Logs:    {self._rel(self.log_dir)}/")
        say(f"CLI:     PORTAL_DATA_DIR={self._rel(self.data_dir)} .venv/bin/python manage.py acr "
            f"connected-registry show --registry {REGISTRY_NAME} --name {CONNECTED_NAME} --output table\n")

        say("7. Continuous sync: a new tag pushed to the parent now ...")
        tag = f"demo-{time.strftime('%H%M%S')}"
        [new] = images.populate(parent.host, [images.ImageSpec("hello-world", tag, seed=secrets.token_hex(4))])
        say(f"  pushed hello-world:{tag} {new.digest} to the parent")
        t0 = time.monotonic()
        arrived = False
        while time.monotonic() - t0 < 180:
            self.check_services()
            if tag in _tags(child, "hello-world"):
                digest = images.remote_digest(child.host, "hello-world", tag)
                same = "same digest" if digest == new.digest else f"DIFFERENT digest {digest}"
                say(f"  ... on the child after {time.monotonic() - t0:.0f} s, {same}")
                arrived = True
                break
            time.sleep(2)
        if not arrived:
            say("  ... not on the child after 180 s: see the worker and beat logs")

        say("\nRunning. Press Ctrl-C to stop everything.")
        while True:
            self.check_services()
            time.sleep(1)

    def compare(self, parent, child, pushed) -> None:
        rows = []
        for repo in SYNCED_REPOS:
            for tag in sorted(_tags(parent, repo)):
                p = images.remote_digest(parent.host, repo, tag)
                try:
                    c = images.remote_digest(child.host, repo, tag)
                except RuntimeError:
                    c = ""
                rows.append((f"{repo}:{tag}", p, c, "same" if p == c else ("MISSING" if not c else "DIFFERENT")))
        width = max(len(r[0]) for r in rows) if rows else 10
        short = lambda d: d[:7 + 20] if d else "-"  # noqa: E731
        say(f"  {'TAG':<{width}}  {'PARENT':<27}  {'CONNECTED':<27}  ")
        for ref, p, c, verdict in rows:
            say(f"  {ref:<{width}}  {short(p):<27}  {short(c):<27}  {verdict}")
        ok = sum(1 for r in rows if r[3] == "same")
        say(f"  {ok} of {len(rows)} tags identical (full digests compared; shown to 20 hex digits)")


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=@" for c in arg) else repr(arg)


def _take_demo_lock():
    """Hold an exclusive lock for the demo's lifetime (released when the process ends)."""
    import fcntl

    DEMO_DIR.parent.mkdir(parents=True, exist_ok=True)
    lock = open(DEMO_DIR.parent / "demo.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise RuntimeError("another demo is running from this checkout: stop it first (Ctrl-C)") from None
    return lock


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tags(reg, repo: str) -> list[str]:
    r = httpx.get(f"{reg.url}/v2/{repo}/tags/list", params={"n": 1000}, timeout=10)
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return r.json().get("tags") or []


def _catalog(reg) -> list[str]:
    r = httpx.get(f"{reg.url}/v2/_catalog", params={"n": 1000}, timeout=10)
    r.raise_for_status()
    return r.json().get("repositories") or []


def main() -> int:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    demo = Demo()
    rc = 0
    try:
        demo.run()
    except Stop as e:
        say(f"\n{e.args[0]} received")
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        say(f"\ndemo failed: {e}")
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop_all()
    say("Stopped.")
    return rc


if __name__ == "__main__":
    sys.exit(main())
