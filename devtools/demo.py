"""The demo: the whole product on one machine, on real registries.

    ./scripts/demo            (bootstrap, then: .venv/bin/python -m devtools.demo)

Starts two real registries (parent and connected, Debian's docker-registry)
with `auth: token` pointing at the portal, the portal (gunicorn), a Celery
worker and Celery beat, with their data in .var/demo/ (wiped at each start);
creates the registry and a client token with the `acr` command and fills the
parent with real images as that token; creates, configures (get-settings) and
activates a connected registry, which syncs as its sync token; shows the
parent's and the child's manifest digests side by side (read with client
tokens); pushes a new tag and shows it arrive through continuous sync; then
disables the sync token and shows the registries refuse it and sync stop,
and enables it again. Ctrl-C or SIGTERM stops everything.

Environment: PORT (default 8000) for the portal; REDIS_URL to use Redis as
the Celery broker (default: a file broker in .var/demo/portal, no server).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from connected.registry_client import AuthError, NotFound, RegistryClient
from connected.tokenservice import naming
from devtools import images
from devtools.processes import start_registry, stop_process, wait_for_port

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = BASE_DIR / ".var" / "demo"
REGISTRY_NAME = "demoregistry"
PUSHER = "demopusher"  # a client token that may push to the parent
READER = "factoryreader"  # a client token of the connected registry, for local clients
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
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Whoever read our output is gone (`./scripts/demo | head`): keep
        # going quietly, so that stopping still cleans everything up.
        sys.stdout = open(os.devnull, "w")


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
        # The realm of the registries' `auth: token` blocks.
        env["PORTAL_URL"] = f"http://127.0.0.1:{self.port}"
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

    def note_stopped_registries(self, gone: set[str]) -> None:
        """Say once that a registry stopped (someone killed it to watch the
        portal's health check): the portal keeps running and shows it."""
        for label, registry in self.registries:
            if label not in gone and registry.proc.poll() is not None:
                gone.add(label)
                say(f"  the {label} registry at {registry.url} exited ({registry.proc.returncode}); the portal "
                    f"shows it at its next health check (every {self.env.get('PORTAL_HEALTH_CHECK_INTERVAL', '30')} s)")

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

        say("1. The portal's database, static files and token service")
        self.manage("migrate", "--noinput", echo=False)
        self.manage("collectstatic", "--noinput", echo=False)
        password = secrets.token_urlsafe(12)
        # The password goes through the environment, never a command line or a log.
        self.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.invalid",
                    echo=False, extra_env={"DJANGO_SUPERUSER_PASSWORD": password})
        say("  migrated, static files collected, superuser 'admin' created")
        # The signing key is created on first use; registries trust its certificate.
        service = json.loads(self.manage("acr", "token-service", "export", "--output-dir",
                                         str(DEMO_DIR / "token-service")).stdout)
        say("")

        say("2. Two real registries (CNCF distribution), both guarded by the portal's token service")
        parent = start_registry(DEMO_DIR / "parent-registry", auth=self.auth(
            service, naming.registry_service(REGISTRY_NAME)))
        self.registries.append(("parent", parent))
        child = start_registry(DEMO_DIR / "connected-registry", auth=self.auth(
            service, naming.connected_registry_service(REGISTRY_NAME, CONNECTED_NAME)))
        self.registries.append(("connected", child))
        say(f"  parent    {parent.url}  (auth: token, service {naming.registry_service(REGISTRY_NAME)})\n"
            f"  connected {child.url}  (auth: token, service "
            f"{naming.connected_registry_service(REGISTRY_NAME, CONNECTED_NAME)})\n"
            f"  realm     {service['realm']}\n")

        say("3. Services")
        if _port_busy(self.port):
            raise RuntimeError(f"port {self.port} is in use: set PORT to a free port")
        self.start_service("worker")
        self.start_service("beat")
        self.start_service("web", extra_env={"GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port}"})
        wait_for_port(self.port, timeout=30, proc=self.services["web"])
        portal_url = f"http://127.0.0.1:{self.port}/"
        say("")

        say("4. The registry, a client token that may push, and real images pushed with it")
        self.manage("acr", "create", "--name", REGISTRY_NAME, "--login-server", parent.url,
                    "--data-endpoint-enabled")
        # Its events go to the portal: each push becomes a sync message,
        # applied within seconds (the secret is shown once, kept in its config).
        wired = json.loads(self.manage("acr", "events-secret", "generate", "--registry", REGISTRY_NAME, "--yes",
                                       echo=False).stdout)
        parent.stop()
        parent = start_registry(parent.root, parent.port, auth=self.auth(
            service, naming.registry_service(REGISTRY_NAME)), notifications=wired["notifications"])
        self.registries[0] = ("parent", parent)
        say(f"$ python manage.py acr events-secret generate --registry {REGISTRY_NAME} --yes\n"
            f"  the parent restarted with a notifications block: its events go to {wired['eventsUrl']}")
        repos = sorted({spec.repo for spec in images.demo_dataset()})
        pusher = self.client_token(PUSHER, [[repo, "content/read", "content/write"] for repo in repos])
        self.parent_auth = images.write_authfile(DEMO_DIR / "pusher-auth.json", parent.host, PUSHER, pusher)
        t0 = time.monotonic()
        pushed = images.populate(parent.host, images.demo_dataset(), authfile=self.parent_auth)
        say(f"  {len(pushed)} tags in {len({p.repo for p in pushed})} repositories "
            f"in {time.monotonic() - t0:.1f} s (skopeo as '{PUSHER}'): "
            + ", ".join(p.spec.ref for p in pushed))
        with RegistryClient(parent.url) as anonymous:
            try:
                anonymous.list_tags("hello-world")
                say("  !! the parent answered an anonymous client")
            except AuthError:
                say("  an anonymous client is refused by the parent")
        say("")

        say("5. The connected registry: create, get its settings (a sync-token password), activate, sync")
        self.manage("acr", "connected-registry", "create", "--registry", REGISTRY_NAME, "--name", CONNECTED_NAME,
                    "--repository", *SYNCED_REPOS)
        settings = self.manage("acr", "connected-registry", "get-settings", "--registry", REGISTRY_NAME,
                               "--name", CONNECTED_NAME, "--generate-password", "1", "--yes", echo=False)
        self.connection_string = json.loads(settings.stdout)["ACR_REGISTRY_CONNECTION_STRING"]
        say(f"$ python manage.py acr connected-registry get-settings --registry {REGISTRY_NAME} "
            f"--name {CONNECTED_NAME} --generate-password 1 --yes\n"
            "  (connection string with the sync token's password, shown once; the worker keeps an "
            "encrypted copy to sync as that token)")
        self.manage("acr", "connected-registry", "activate", "--registry", REGISTRY_NAME, "--name", CONNECTED_NAME,
                    "--login-server", child.url)
        # Activation queued the initial sync: wait for it (a resync now would
        # only be skipped while that one runs).
        t0 = time.monotonic()
        last_sync = "null"
        while last_sync == "null" and time.monotonic() - t0 < 300:
            self.check_services()
            time.sleep(1)
            last_sync = self.manage("acr", "connected-registry", "show", "--registry", REGISTRY_NAME, "--name",
                                    CONNECTED_NAME, "--query", "lastSync", echo=False).stdout.strip()
        if last_sync == "null":
            say(f"  no sync finished after 300 s: see {self._rel(self.log_dir / 'worker.log')}")
        else:
            say(f"  initial sync finished in {time.monotonic() - t0:.1f} s (as the sync token, through the "
                "token service)")
        reader = self.client_token(READER, [[repo, "content/read", "metadata/read"] for repo in SYNCED_REPOS])
        self.manage("acr", "connected-registry", "update", "--registry", REGISTRY_NAME, "--name", CONNECTED_NAME,
                    "--add-client-tokens", READER, echo=True)
        self.child_auth = images.write_authfile(DEMO_DIR / "reader-auth.json", child.host, READER, reader)
        self.creds = {parent.url: (PUSHER, pusher), child.url: (READER, reader)}
        say("")
        self.check_services()

        say("6. Byte for byte: manifest digests, sha256 of `skopeo inspect --raw` on each side "
            f"(parent read as '{PUSHER}', connected registry as its client token '{READER}')")
        self.compare(parent, child, [p for p in pushed if p.repo in SYNCED_REPOS])
        not_synced = sorted({p.repo for p in pushed} - set(SYNCED_REPOS))
        say(f"  not selected, so not on the child: {', '.join(not_synced)} "
            f"(child has: {', '.join(self._catalog(child)) or 'nothing'})\n")

        self.say_access(portal_url, password)

        say("7. Continuous sync: a new tag pushed to the parent now (its event becomes a sync message) ...")
        self.push_and_wait(parent, child, expect=True)

        say("\n8. Disabling the sync token stops its sync, on the registries themselves")
        sync_token = f"{CONNECTED_NAME}-sync-token"
        self.manage("acr", "token", "update", "--registry", REGISTRY_NAME, "--name", sync_token,
                    "--status", "disabled")
        sync_password = self.connection_string.split("SyncTokenPassword=")[1].split(";")[0]
        with RegistryClient(parent.url, sync_token, sync_password) as as_sync_token:
            try:
                as_sync_token.list_tags("hello-world")
                say("  !! the parent still served the disabled sync token")
            except AuthError as e:
                say(f"  the parent refuses the sync token now (a deployed instance would be stopped too): {e}")
        self.manage("acr", "connected-registry", "show", "--registry", REGISTRY_NAME, "--name", CONNECTED_NAME,
                    "--query", "statusDetails")
        tag, digest = self.push_and_wait(parent, child, expect=False,
                                         wait=2 * float(self.env["PORTAL_CONTINUOUS_INTERVAL"]))
        self.manage("acr", "token", "update", "--registry", REGISTRY_NAME, "--name", sync_token,
                    "--status", "enabled")
        say("  enabled again: the sync message that waited brings the tag")
        self.wait_for_tag(child, tag, digest, expect=True, wait=180)

        say("\n9. The portal keeps running")
        self.say_access(portal_url, password)
        say("Running. Press Ctrl-C to stop everything.")
        gone: set[str] = set()
        while True:
            self.check_services()
            self.note_stopped_registries(gone)
            time.sleep(1)

    def say_access(self, portal_url: str, password: str) -> None:
        """Where the portal is, its login, and how to run the CLI against it."""
        say(f"Portal:  {portal_url}")
        say(f"Login:   admin / {password}")
        say(f"Logs:    {self._rel(self.log_dir)}/")
        # The CLI prints URLs (token realm, events URL) from PORTAL_URL.
        url = f"PORTAL_URL={portal_url.rstrip('/')} " if self.port != 8000 else ""
        say(f"CLI:     PORTAL_DATA_DIR={self._rel(self.data_dir)} {url}.venv/bin/python manage.py acr "
            f"connected-registry show --registry {REGISTRY_NAME} --name {CONNECTED_NAME} --output table\n")

    def auth(self, service: dict, name: str) -> dict:
        """The `auth: token` block of a registry whose service is name."""
        return {"token": {"realm": service["realm"], "service": name, "issuer": service["issuer"],
                          "rootcertbundle": service["bundle"]}}

    def client_token(self, name: str, repositories: list[list[str]]) -> str:
        """Create a client token; its password1 (shown once, kept in memory)."""
        args = [arg for entry in repositories for arg in ("--repository", *entry)]
        say(f"$ python manage.py acr token create --registry {REGISTRY_NAME} --name {name} "
            + " ".join(_quote(a) for a in args))
        out = self.manage("acr", "token", "create", "--registry", REGISTRY_NAME, "--name", name, *args,
                          echo=False).stdout
        say("  (two passwords, shown once)")
        return json.loads(out)["credentials"]["passwords"][0]["value"]

    def push_and_wait(self, parent, child, expect: bool, wait: float = 180) -> tuple[str, str]:
        """Push a new hello-world tag to the parent and wait for it on the child."""
        tag = f"demo-{time.strftime('%H%M%S')}"
        [new] = images.populate(parent.host, [images.ImageSpec("hello-world", tag, seed=secrets.token_hex(4))],
                                authfile=self.parent_auth)
        say(f"  pushed hello-world:{tag} {new.digest} to the parent")
        self.wait_for_tag(child, tag, new.digest, expect, wait)
        return tag, new.digest

    def wait_for_tag(self, child, tag: str, expected: str, expect: bool, wait: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait:
            self.check_services()
            if tag in self._tags(child, "hello-world"):
                digest = images.remote_digest(child.host, "hello-world", tag, self.child_auth)
                same = "same digest" if digest == expected else f"DIFFERENT digest {digest}"
                say(f"  ... hello-world:{tag} on the child after {time.monotonic() - t0:.1f} s, {same}")
                return
            time.sleep(0.5)
        if expect:
            say(f"  ... not on the child after {wait:.0f} s: see the worker and beat logs")
        else:
            say(f"  ... not on the child after {wait:.0f} s, as expected: sync is stopped")

    def _tags(self, reg, repo: str) -> list[str]:
        with RegistryClient(reg.url, *self.creds[reg.url]) as client:
            try:
                return client.list_tags(repo)
            except NotFound:
                return []

    def _catalog(self, reg) -> list[str]:
        # The reader token's scope map has metadata/read: the catalog.
        with RegistryClient(reg.url, *self.creds[reg.url]) as client:
            return client.catalog()

    def compare(self, parent, child, pushed) -> None:
        rows = []
        for repo in SYNCED_REPOS:
            for tag in sorted(self._tags(parent, repo)):
                p = images.remote_digest(parent.host, repo, tag, self.parent_auth)
                try:
                    c = images.remote_digest(child.host, repo, tag, self.child_auth)
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


USAGE = """usage: ./scripts/demo

Starts two real registries, the portal, a Celery worker and beat, fills the
parent with images built on the spot and syncs them to the connected
registry; prints the URL and a login, then runs until Ctrl-C.
Environment: PORT (default 8000), REDIS_URL (Celery broker; default: files)."""


def main() -> int:
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        say(USAGE)
        return 0
    if sys.argv[1:]:
        print(f"demo: unexpected arguments {' '.join(sys.argv[1:])}\n\n{USAGE}", file=sys.stderr)
        return 2
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
