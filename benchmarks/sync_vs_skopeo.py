"""The portal's sync engine against `skopeo sync`, on real local registries.

    .venv/bin/python benchmarks/sync_vs_skopeo.py [--repos 20] [--tags 5] [--total-mib 277]

Data set: devtools.images.benchmark_dataset() - repos × tags single-platform
images, payload layers of incompressible random bytes adding up to total-mib
MiB, plus the shared busybox base layer. Three registries: the parent, a child
for skopeo, a child for the portal's engine. Each tool runs a full sync, then
a sync with nothing changed. Every measured run is a process of its own, timed
wall-clock from start to exit (start-up included) and with its peak RSS
(os.wait4). After each full sync every tag's digest is checked on the child.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import images  # noqa: E402
from devtools.processes import start_registry  # noqa: E402

ACCEPT = ", ".join(images.ALL_MANIFEST_TYPES)


def timed_process(argv: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Run argv; return (wall seconds, peak RSS in KiB, stdout). Fails on non-zero exit."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or images.skopeo_env())
    # Read the pipes in threads so a chatty child cannot block; wait4 gives its rusage.
    import threading

    out, err = [], []
    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read())),
               threading.Thread(target=lambda: err.append(proc.stderr.read()))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): "
                           f"{(out[0] + err[0]).decode(errors='replace')[-2000:]}")
    return elapsed, usage.ru_maxrss, out[0].decode(errors="replace")


def skopeo_sync(src_host: str, dest_host: str, repos: list[str]) -> tuple[float, int]:
    """`skopeo sync --all` of every repository (one invocation per repository,
    in sequence): total seconds, largest peak RSS (KiB)."""
    total, peak = 0.0, 0
    for repo in repos:
        prefix = repo.rsplit("/", 1)[0] if "/" in repo else ""
        dest = f"{dest_host}/{prefix}" if prefix else dest_host
        elapsed, rss, _ = timed_process([
            "skopeo", "--insecure-policy", "sync", "--all", "--src", "docker", "--dest", "docker",
            "--src-tls-verify=false", "--dest-tls-verify=false", "--src-no-creds", "--dest-no-creds",
            "--preserve-digests",
            f"{src_host}/{repo}", dest])
        total += elapsed
        peak = max(peak, rss)
    return total, peak


def engine_sync(src_url: str, dest_url: str, repos: list[str]) -> tuple[float, int, str]:
    """The portal's engine in a process of its own (this script, --engine-run)."""
    env = {**images.skopeo_env(), "PORTAL_DATA_DIR": str(Path(tempfile.gettempdir()) / "portal-bench-data")}
    env.pop("DATABASE_URL", None)
    elapsed, rss, out = timed_process(
        [sys.executable, __file__, "--engine-run", src_url, dest_url, *repos], env=env)
    return elapsed, rss, out.strip().splitlines()[-1] if out.strip() else ""


def engine_run(src_url: str, dest_url: str, repos: list[str]) -> None:
    """Body of --engine-run: one sync of repos from src to dest with connected.sync."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_portal.settings")
    import django

    django.setup()
    from connected.registry_client import RegistryClient

    try:
        from connected.sync.engine import sync_repositories
    except ImportError as e:
        print(f"ENGINE-MISSING {e}")
        sys.exit(3)
    t0 = time.perf_counter()
    with RegistryClient(src_url) as source, RegistryClient(dest_url) as dest:
        result = sync_repositories(source, dest, repos)
    print(f"{time.perf_counter() - t0:.2f} s inside the engine, {_summary(result)}")
    if result.errors or result.count("failed"):
        sys.exit(4)


def _summary(result) -> str:
    """connected.sync.engine.SyncResult in one line."""
    counts = {o: result.count(o) for o in ("copied", "in_sync", "failed")}
    text = (f"copied={counts['copied']} in_sync={counts['in_sync']} failed={counts['failed']} "
            f"moved={result.bytes_moved / images.MiB:.1f}MiB")
    if result.errors or counts["failed"]:
        reasons = result.errors + [f"{t.repository}:{t.tag}: {t.reason}" for t in result.tags if t.outcome == "failed"]
        text += " errors=" + "; ".join(reasons)[:500]
    return text


def verify(parent, child, specs) -> int:
    """Tags whose digest on child equals the one on parent (HEAD, Docker-Content-Digest)."""
    import httpx

    same = 0
    with httpx.Client(timeout=30, headers={"Accept": ACCEPT}) as http:
        for s in specs:
            p = http.head(f"{parent.url}/v2/{s.repo}/manifests/{s.tag}").headers.get("Docker-Content-Digest")
            c = http.head(f"{child.url}/v2/{s.repo}/manifests/{s.tag}").headers.get("Docker-Content-Digest")
            same += bool(p) and p == c
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", type=int, default=20)
    ap.add_argument("--tags", type=int, default=5)
    ap.add_argument("--total-mib", type=float, default=277)
    ap.add_argument("--skip-engine", action="store_true", help="measure skopeo only")
    ap.add_argument("--engine-run", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine_run:
        src, dest, *repos = args.engine_run
        engine_run(src, dest, repos)
        return 0

    specs = images.benchmark_dataset(args.repos, args.tags, args.total_mib)
    repos = sorted({s.repo for s in specs})
    payload_mib = sum(s.payload_size for s in specs) / images.MiB
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        regs = {}
        try:
            for name in ("parent", "skopeo-child", "engine-child"):
                regs[name] = start_registry(Path(tmp) / name)
            t0 = time.perf_counter()
            images.populate(regs["parent"].host, specs, workers=4)
            print(f"data set: {len(repos)} repositories x {args.tags} tags, {payload_mib:.0f} MiB of random "
                  f"layers + shared base layer; built/pushed in {time.perf_counter() - t0:.1f} s", flush=True)

            full, rss_full = skopeo_sync(regs["parent"].host, regs["skopeo-child"].host, repos)
            ok = verify(regs["parent"], regs["skopeo-child"], specs)
            noop, rss_noop = skopeo_sync(regs["parent"].host, regs["skopeo-child"].host, repos)
            rows.append(("`skopeo sync --all` (1 process per repository)", full, noop, max(rss_full, rss_noop),
                         f"{ok}/{len(specs)}"))

            if not args.skip_engine:
                try:
                    full, rss_full, out_full = engine_sync(regs["parent"].url, regs["engine-child"].url, repos)
                    ok = verify(regs["parent"], regs["engine-child"], specs)
                    noop, rss_noop, out_noop = engine_sync(regs["parent"].url, regs["engine-child"].url, repos)
                    rows.append(("portal engine (`connected.sync.engine.sync_repositories`)", full, noop,
                                 max(rss_full, rss_noop), f"{ok}/{len(specs)}"))
                    notes += [f"engine full: {out_full}", f"engine no-change: {out_noop}"]
                except RuntimeError as e:
                    rows.append(("portal engine", None, None, None, "not measured"))
                    notes.append(f"engine: {str(e).strip()[-500:]}")
        finally:
            for reg in regs.values():
                reg.stop()

    print(f"\n{len(repos)} repositories × {args.tags} tags, {payload_mib:.0f} MiB incompressible layers + "
          f"shared base layer, {os.cpu_count()} CPUs\n")
    print("| tool | full sync (s) | no-change resync (s) | peak RSS (MiB) | tags identical |")
    print("|---|---|---|---|---|")
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    for name, full, noop, rss, ok in rows:
        print(f"| {name} | {fmt(full, '.1f')} | {fmt(noop, '.1f')} | "
              f"{fmt(None if rss is None else rss / 1024, '.0f')} | {ok} |")
    for n in notes:
        print(f"\n{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
