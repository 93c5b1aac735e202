"""Sync messages: how long a tag pushed to the parent takes to be on a
connected registry when the parent's events are wired to the portal.

    .venv/bin/python benchmarks/message_latency.py [--pushes 20] [--no-three-levels] [--timeout 60] [--keep]

Everything runs as real processes against a temporary directory: a private
redis-server, distribution registries on free ports, and the portal with a
private PORTAL_DATA_DIR (SQLite): `manage.py migrate`, gunicorn (2 workers)
as the web server receiving POST /events/, and one Celery worker
(--concurrency 2). No beat runs and PORTAL_FULL_COMPARISON_INTERVAL and
PORTAL_CONTINUOUS_INTERVAL are 3600 s, so only the events move anything.
The registry is created with --data-endpoint-enabled, its events secret
generated (`acr events-secret generate`), and the parent restarted with the
notifications block that sends its events to the portal.

Scenarios (each with its own repository, after the initial syncs finished):

- two levels: parent -> child, one continuous connected registry;
- three levels (unless --no-three-levels): top -> middle -> bottom, only the
  top sends events; the middle's run passes the change on as a message.

Each scenario pushes --pushes tags, one at a time, each a small distinct
image (devtools.images.ImageSpec with its own seed), and times from the end
of the push (populate() returned) to the tag being on the last registry with
the parent's digest (HEAD polled every 50 ms). Before the next push it waits
until every run of the scenario finished, so each push meets an idle worker
(--no-settle pushes again as soon as the tag arrived).

Prints each push, then markdown tables: median, p90 (nearest rank) and max
per scenario with the runs recorded by trigger, and the median split of
where the time went, from the portal's database (the event's timestamp at
distribution, when the web receiver stored it, and each run's queued_at,
started_at, finished_at), relative to the end of the push. Exits 1 when a
push does not arrive within --timeout seconds. Every process started is
stopped at the end, also on Ctrl-C or failure.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connected.registry_client import RegistryClient  # noqa: E402
from connected.tokenservice.registry_config import notifications_block  # noqa: E402
from devtools.images import ImageSpec, build_spec, populate  # noqa: E402
from devtools.processes import free_port, start_redis, start_registry, wait_for_port  # noqa: E402
from devtools.waiting import wait_for  # noqa: E402

BIN = Path(sys.executable).parent
REGISTRY = "latencybench"
POLL = 0.05


class Timeout(Exception):
    pass


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL to its whole process group (it was started in a
    session of its own: gunicorn's and Celery's children go with it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait()


def stop_leftover_children() -> None:
    """A server interrupted while it started (before its stopper was noted) is
    still a child of this process: stop it, by its id."""
    proc_dir = Path("/proc")
    if not proc_dir.exists():
        return
    me = os.getpid()
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == me and fields[0] != "Z":
            pid = int(entry.name)
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                    time.sleep(0.1)
                else:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


class Bench:
    """The processes of one benchmark, all stopped by close()."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.data_dir = tmp / "portal"
        self.stoppers = []  # callables, stopped in reverse order
        self.env = None
        self.url = ""

    def close(self) -> None:
        while self.stoppers:
            try:
                self.stoppers.pop()()
            except Exception as e:  # keep stopping the others
                print(f"stopping a process failed: {e}", file=sys.stderr)
        stop_leftover_children()


    # -- servers

    def redis(self):
        server = start_redis(self.tmp / "redis")
        self.stoppers.append(server.stop)
        return server

    def registry(self, name: str, port: int | None = None, notifications: dict | None = None):
        reg = start_registry(self.tmp / name, port, notifications=notifications)
        self.stoppers.append(reg.stop)
        return reg

    def send_events(self, reg, secret: str):
        """Restart reg (same storage, same port) with its events going to the portal."""
        reg.stop()
        return self.registry(reg.root.name, reg.port, notifications_block(secret, self.url))

    def popen(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.stoppers.append(lambda: stop(proc))
        return proc

    def portal(self, redis_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DATABASE_URL"))}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env.update(PORTAL_DATA_DIR=str(self.data_dir), REDIS_URL=redis_url, PORTAL_URL=self.url,
                   PORTAL_FULL_COMPARISON_INTERVAL="3600", PORTAL_CONTINUOUS_INTERVAL="3600",
                   PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="registry_portal.settings")
        self.env = env
        self.manage("migrate", "--noinput")
        web = self.popen([str(BIN / "gunicorn"), "registry_portal.wsgi", "--workers", "2",
                          "--bind", f"127.0.0.1:{port}", "--timeout", "60"], "web")
        wait_for_port(port, timeout=30, proc=web)

    def worker(self) -> None:
        self.popen([str(BIN / "celery"), "-A", "registry_portal", "worker", "-l", "info",
                    "--concurrency", "2", "-n", "bench@%h"], "worker")

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def events_secret(self) -> str:
        out = self.manage("acr", "events-secret", "generate", "--registry", REGISTRY, "--yes")
        return json.loads(out)["header"].split(" ", 2)[-1]

    # -- the portal's database (read only)

    def query(self, sql: str, params=()) -> list[dict]:
        db = sqlite3.connect(f"file:{self.data_dir / 'portal.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql, params)]
        finally:
            db.close()

    def unfinished(self, names: list[str]) -> int:
        marks = ",".join("?" * len(names))
        return self.query(
            f"SELECT count(*) AS n FROM connected_syncrun r JOIN connected_connectedregistry c "
            f"ON c.id = r.connected_registry_id WHERE c.name IN ({marks}) AND r.finished_at IS NULL",
            names)[0]["n"]

    def runs_by_trigger(self, names: list[str]) -> dict[str, int]:
        marks = ",".join("?" * len(names))
        rows = self.query(
            f"SELECT r.trigger, r.status, count(*) AS n FROM connected_syncrun r JOIN connected_connectedregistry c "
            f"ON c.id = r.connected_registry_id WHERE c.name IN ({marks}) GROUP BY r.trigger, r.status", names)
        counts: dict[str, int] = {}
        for r in rows:
            key = r["trigger"] if r["status"] == "succeeded" else f"{r['trigger']} ({r['status']})"
            counts[key] = counts.get(key, 0) + r["n"]
        return counts

    def timeline(self, repo: str, tag: str, names: list[str]) -> dict:
        """Wall-clock times (epoch seconds) of the event and of each level's run that copied the tag."""
        event = self.query("SELECT occurred_at, received_at FROM connected_receivedevent WHERE repository = ? "
                           "AND tag = ? AND action = 'push' ORDER BY id LIMIT 1", (repo, tag))
        out = {}
        if event:
            out["event"] = epoch(event[0]["occurred_at"])
            out["received"] = epoch(event[0]["received_at"])
        for name in names:
            run = self.query(
                "SELECT r.trigger, r.queued_at, r.started_at, r.finished_at FROM connected_syncruntag t "
                "JOIN connected_syncrun r ON r.id = t.run_id JOIN connected_connectedregistry c "
                "ON c.id = r.connected_registry_id WHERE c.name = ? AND t.repository = ? AND t.tag = ? "
                "AND t.outcome = 'copied' ORDER BY r.id LIMIT 1", (name, repo, tag))
            if run:
                out[name] = {"trigger": run[0]["trigger"], **{k: epoch(run[0][f"{k}_at"])
                                                               for k in ("queued", "started", "finished")}}
        return out


def epoch(value) -> float | None:
    if not value:
        return None
    stamp = dt.datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)  # Django keeps UTC in SQLite
    return stamp.timestamp()


def digest_at(client: RegistryClient, repo: str, tag: str) -> str | None:
    try:
        return client.head_manifest(repo, tag)
    except Exception:
        return None


def wait_until(predicate, timeout: float, what: str):
    return wait_for(predicate, timeout, what, error=Timeout)


def settle(bench: Bench, names: list[str], timeout: float) -> None:
    """Every run of names finished, twice 0.3 s apart (a follow-up may be queued just after one finishes)."""
    def quiet():
        if bench.unfinished(names):
            return False
        time.sleep(0.3)
        return bench.unfinished(names) == 0
    wait_until(quiet, timeout, f"the runs of {', '.join(names)} to finish")


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def scenario(bench: Bench, record: dict, top, chain: list[tuple[str, object]], repo: str, pushes: int,
             timeout: float, settle_between: bool) -> None:
    """Create the connected registries of chain ((name, registry process), top first), wait for the
    initial syncs, then push and time, appending to record["results"]."""
    label, names, results = record["label"], record["names"], record["results"]
    bottom = chain[-1][1]
    [base] = populate(top.host, [ImageSpec(repo, "base", seed=f"message-latency-{label}-base")])
    parent = None
    for name, reg in chain:
        args = ["acr", "connected-registry", "create", "--registry", REGISTRY, "--name", name,
                "--repository", repo, "--login-server", reg.url]
        bench.manage(*args, *(["--parent", parent] if parent else []))
        parent = name
    specs = [ImageSpec(repo, f"push-{i + 1:02d}", seed=f"message-latency-{label}-{i + 1}") for i in range(pushes)]
    for spec in specs:
        build_spec(spec)  # built (or found in the cache) before timing: populate() then only pushes
    with RegistryClient(bottom.url, timeout=5, retries=0) as client:
        wait_until(lambda: digest_at(client, repo, "base") == base.digest, 120, f"the initial sync of {label}")
        settle(bench, names, 120)
        print(f"\n{label}: {' -> '.join(['parent', *names])}, repository {repo}", flush=True)
        for spec in specs:
            [pushed] = populate(top.host, [spec])
            pushed_wall, pushed_at = time.time(), time.monotonic()
            deadline = pushed_at + timeout
            while True:
                if digest_at(client, repo, spec.tag) == pushed.digest:
                    seen_wall, took = time.time(), time.monotonic() - pushed_at
                    break
                now = time.monotonic()
                if now > deadline:
                    results.append({"tag": spec.tag, "seconds": None})
                    raise Timeout(f"{label}: {repo}:{spec.tag} not on {names[-1]} within {timeout:g} s")
                time.sleep(max(0.0, POLL - (time.monotonic() - now)))
            results.append({"tag": spec.tag, "seconds": took, "pushed": pushed_wall, "seen": seen_wall})
            if settle_between:
                settle(bench, names, timeout)
                explain(bench, repo, names, results[-1])
            else:
                print(f"  {spec.tag}  {took:6.3f} s", flush=True)
        if not settle_between:  # the runs' ledgers are complete once they finished
            settle(bench, names, timeout)
            print("  where the time went:")
            for result in results:
                explain(bench, repo, names, result)


def explain(bench: Bench, repo: str, names: list[str], result: dict) -> None:
    """Add the split of one push (from the portal's database) to result and print it."""
    line = bench.timeline(repo, result["tag"], names)
    result["split"] = offsets(line, names, result["pushed"], result["seen"])
    result["triggers"] = [line.get(n, {}).get("trigger", "?") for n in names]
    shown = "  ".join(f"{k} {v:+.3f}" for k, v in result["split"].items() if v is not None)
    print(f"  {result['tag']}  {result['seconds']:6.3f} s   [{'/'.join(result['triggers'])}]  {shown}", flush=True)

def offsets(line: dict, names: list[str], pushed: float, seen: float) -> dict:
    """Seconds from the end of the push to each step (negative: before populate() returned)."""
    def rel(t):
        return None if t is None else t - pushed
    split = {"event": rel(line.get("event")), "received": rel(line.get("received"))}
    for name in names:
        run = line.get(name, {})
        for step in ("queued", "started", "finished"):
            split[f"{name}.{step}"] = rel(run.get(step))
    split["seen"] = seen - pushed
    return split


def report(done: list[dict], bench: Bench, pushes: int) -> None:
    cores = os.cpu_count()
    print(f"\n{pushes} pushes per scenario, {cores} CPUs, {dt.date.today().isoformat()}. "
          f"Seconds from the end of the push to the tag on the last registry.\n")
    print("| scenario | pushes arrived | median (s) | p90 (s) | max (s) | runs: message | runs: other |")
    print("|---|---|---|---|---|---|---|")
    for s in done:
        times = [r["seconds"] for r in s["results"] if r["seconds"] is not None]
        counts = bench.runs_by_trigger(s["names"])
        other = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k != "message") or "0"
        if times:
            print(f"| {s['label']} | {len(times)}/{len(s['results'])} | {statistics.median(times):.2f} | "
                  f"{nearest_rank(times, 0.9):.2f} | {max(times):.2f} | {counts.get('message', 0)} | {other} |")
        else:
            print(f"| {s['label']} | 0/{len(s['results'])} | | | | {counts.get('message', 0)} | {other} |")
    for s in done:
        splits = [r["split"] for r in s["results"] if r.get("split")]
        if not splits:
            continue
        print(f"\n{s['label']}: median seconds from the end of the push (populate() returned)\n")
        print("| step | median (s) | max (s) |")
        print("|---|---|---|")
        labels = {"event": "distribution's event timestamp (the manifest PUT)",
                  "received": "event stored by the web receiver (/events/)", "seen": "tag seen on the last registry (polled every 50 ms)"}
        for key in splits[0]:
            values = [sp[key] for sp in splits if sp.get(key) is not None]
            if values:
                name, _, step = key.partition(".")
                text = labels.get(key) or f"{name}: run {step}" + ("_at" if step else "")
                print(f"| {text} | {statistics.median(values):+.3f} | {max(values):+.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pushes", type=int, default=20, help="tags pushed per scenario, one at a time")
    ap.add_argument("--three-levels", action=argparse.BooleanOptionalAction, default=True,
                    help="also time top -> middle -> bottom (default: yes)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds a push may take to arrive")
    ap.add_argument("--settle", action=argparse.BooleanOptionalAction, default=True,
                    help="wait for the runs to finish before the next push (default: yes)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = ap.parse_args()

    # SIGTERM (and SIGHUP) end like Ctrl-C: through the finally below.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    tmp = Path(tempfile.mkdtemp(prefix="portal-message-latency-"))
    bench = Bench(tmp)
    done: list[dict] = []
    status = 0
    try:
        redis = bench.redis()
        bench.portal(redis.url)
        parent = bench.registry("parent")
        bench.manage("acr", "create", "--name", REGISTRY, "--login-server", parent.url, "--data-endpoint-enabled")
        parent = bench.send_events(parent, bench.events_secret())
        bench.worker()
        print(f"portal {bench.url}, parent {parent.url} (events wired), temporary directory {tmp}", flush=True)
        plan = [("two levels", ["child"], "bench/two-levels")]
        if args.three_levels:
            plan.append(("three levels", ["middle", "bottom"], "bench/three-levels"))
        for label, names, repo in plan:
            chain = [(name, bench.registry(name)) for name in names]
            record = {"label": label, "names": names, "results": []}
            done.append(record)
            try:
                scenario(bench, record, parent, chain, repo, args.pushes, args.timeout, args.settle)
            except Timeout as e:
                print(f"\nFAILED: {e}", file=sys.stderr)
                status = 1
                break
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process started", file=sys.stderr)
        status = 130
    except Exception:
        status = 1
        raise
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if done:
                report(done, bench, args.pushes)
        finally:
            bench.close()
            if status and status != 130:
                for log in ("web", "worker"):
                    path = tmp / f"{log}.log"
                    if path.exists():
                        print(f"\n--- {path} (end)\n{path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            if args.keep or status == 1:
                print(f"\nkept {tmp}", file=sys.stderr)
            else:
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
