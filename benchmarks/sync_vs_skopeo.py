"""The portal's sync against `skopeo sync --all`, on real local registries.

    .venv/bin/python benchmarks/sync_vs_skopeo.py [--repos 20] [--tags 5] [--total-mib 277] [--big-layer-mib 1024]

Data set: devtools.images.benchmark_dataset(): repos × tags single-platform
images whose payload layers (incompressible random bytes) add up to
total-mib MiB, plus the shared busybox base layer. Registries: the parent, a
child for skopeo, a child for the portal.

skopeo: `skopeo sync --all`, one process per repository (as an operator's cron
job would run it), a full copy then a run with nothing changed.

The portal: one process plays the worker. It migrates a private SQLite
database, creates the registry and a ReadOnly connected registry for every
repository, and carries out runs exactly as a Celery worker does
(connected.sync.runner.execute_run, ledger and all), timing each run inside
the worker: the initial full sync; a manual resync with nothing changed (it
compares both sides in full); a continuous-trigger resync with nothing
changed (one request per unchanged tag); and, after one tag changed at the
parent, a continuous-trigger resync. With --big-layer-mib, another worker
process copies one image with a layer of that size and its peak RSS is
reported (os.wait4).

Prints a markdown table; every tag's digest is checked on both children.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
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
    out, err = [], []
    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read())),
               threading.Thread(target=lambda: err.append(proc.stderr.read()))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    for r in readers:
        r.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {(out[0] + err[0]).decode(errors='replace')[-3000:]}")
    return elapsed, usage.ru_maxrss, out[0].decode(errors="replace")


def skopeo_sync(src_host: str, dest_host: str, repos: list[str]) -> float:
    total = 0.0
    for repo in repos:
        prefix = repo.rsplit("/", 1)[0] if "/" in repo else ""
        dest = f"{dest_host}/{prefix}" if prefix else dest_host
        elapsed, _, _ = timed_process([
            "skopeo", "--insecure-policy", "sync", "--all", "--src", "docker", "--dest", "docker",
            "--src-tls-verify=false", "--dest-tls-verify=false", "--src-no-creds", "--dest-no-creds",
            "--preserve-digests", f"{src_host}/{repo}", dest])
        total += elapsed
    return total


def worker(args: list[str]) -> tuple[float, int, dict]:
    """Run this script's --worker mode in a process of its own."""
    data = tempfile.mkdtemp(prefix="portal-bench-data-")
    env = {**images.skopeo_env(), "PORTAL_DATA_DIR": data, "DJANGO_SETTINGS_MODULE": "registry_portal.settings"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    elapsed, rss, out = timed_process([sys.executable, __file__, "--worker", *args], env=env)
    return elapsed, rss, json.loads(out.strip().splitlines()[-1])


def worker_main(parent_url: str, child_url: str, parent_host: str, change: str, repos: list[str]) -> None:
    """--worker: the runs, as a Celery worker carries them out; prints JSON timings."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from connected.models import ConnectedRegistry, Registry, SyncRun
    from connected.sync.runner import execute_run

    registry = Registry.objects.create(name="benchregistry", login_server=parent_url, data_endpoint_enabled=True)
    cr = ConnectedRegistry.objects.create(registry=registry, name="benchchild", repositories=repos,
                                          login_server=child_url, activation_status="Active")
    timings = {}

    def run(label: str, trigger: str) -> None:
        queued = SyncRun.objects.create(connected_registry=cr, trigger=trigger)
        t0 = time.perf_counter()
        done = execute_run(queued.pk)
        timings[label] = {"seconds": time.perf_counter() - t0, "status": done.status,
                          "copied": done.tags_copied, "in_sync": done.tags_skipped, "failed": done.tags_failed,
                          "mib": done.bytes_moved / images.MiB, "error": done.error[:300]}

    run("full", SyncRun.Trigger.INITIAL)
    if change:
        run("nochange_manual", SyncRun.Trigger.MANUAL)
        run("nochange_routine", SyncRun.Trigger.CONTINUOUS)
        repo, tag = change.split(":")
        images.populate(parent_host, [images.ImageSpec(repo, tag, seed="changed", payload_size=2 * images.MiB)])
        run("one_changed", SyncRun.Trigger.CONTINUOUS)
    print(json.dumps(timings))


def push_big_image(url: str, repo: str, tag: str, size: int) -> None:
    """An image with one layer of `size` random bytes, streamed (never whole in memory)."""
    import hashlib
    import random

    from connected.registry_client import Manifest, RegistryClient

    def chunks():
        rng, left = random.Random(size), size
        while left:
            n = min(left, images.MiB)
            left -= n
            yield rng.randbytes(n)

    hasher = hashlib.sha256()
    for chunk in chunks():
        hasher.update(chunk)
    layer = "sha256:" + hasher.hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
    }).encode()
    with RegistryClient(url, timeout=120) as client:
        client.upload_blob(repo, layer, size, chunks())
        client.upload_blob(repo, config_digest, len(config), [config])
        client.put_manifest(repo, tag, Manifest.from_bytes(manifest, "application/vnd.oci.image.manifest.v1+json"))


def verify(parent, child, specs) -> int:
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
    ap.add_argument("--big-layer-mib", type=int, default=0, help="also measure the worker's memory on one layer this big")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        parent_url, child_url, parent_host, change, *repos = args.worker
        worker_main(parent_url, child_url, parent_host, change, repos)
        return 0

    specs = images.benchmark_dataset(args.repos, args.tags, args.total_mib)
    repos = sorted({s.repo for s in specs})
    payload_mib = sum(s.payload_size for s in specs) / images.MiB
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        regs = {}
        try:
            for name in ("parent", "skopeo-child", "portal-child"):
                regs[name] = start_registry(Path(tmp) / name)
            parent = regs["parent"]
            images.populate(parent.host, specs, workers=4)
            print(f"data set: {len(repos)} repositories × {args.tags} tags, {payload_mib:.0f} MiB", flush=True)

            skopeo_full = skopeo_sync(parent.host, regs["skopeo-child"].host, repos)
            skopeo_ok = verify(parent, regs["skopeo-child"], specs)
            skopeo_noop = skopeo_sync(parent.host, regs["skopeo-child"].host, repos)

            changed = f"{specs[0].repo}:{specs[0].tag}"
            wall, rss, t = worker([parent.url, regs["portal-child"].url, parent.host, changed, *repos])
            portal_ok = verify(parent, regs["portal-child"], specs)

            big = None
            if args.big_layer_mib:
                big_child = start_registry(Path(tmp) / "big-child")
                regs["big-child"] = big_child
                push_big_image(parent.url, "bench/big", "v1", args.big_layer_mib * images.MiB)
                _, big_rss, big_t = worker([parent.url, big_child.url, parent.host, "", "bench/big"])
                big = (big_rss, big_t["full"])
        finally:
            for reg in regs.values():
                reg.stop()

    print(f"\n{len(repos)} repositories × {args.tags} tags, {payload_mib:.0f} MiB of incompressible layers + "
          f"a shared base layer, {os.cpu_count()} CPUs. Seconds; lower is better.\n")
    print("| run | skopeo sync --all | portal worker | portal / skopeo |")
    print("|---|---|---|---|")
    rows = [("full sync", skopeo_full, t["full"]),
            ("nothing changed, full comparison (manual resync)", skopeo_noop, t["nochange_manual"]),
            ("nothing changed, routine (continuous)", skopeo_noop, t["nochange_routine"]),
            ("one tag changed, routine (vs skopeo's no-change)", skopeo_noop, t["one_changed"])]
    for label, sk, p in rows:
        print(f"| {label} | {sk:.2f} | {p['seconds']:.2f} | {p['seconds'] / sk:.2f} |")
    print(f"\ntags identical to the parent: skopeo {skopeo_ok}/{len(specs)}, portal {portal_ok}/{len(specs)}")
    print(f"portal worker process: {wall:.1f} s wall including start-up and migrate, peak RSS {rss / 1024:.0f} MiB")
    for label, p in t.items():
        print(f"  {label}: {p['status']}, copied {p['copied']}, in sync {p['in_sync']}, failed {p['failed']}, "
              f"{p['mib']:.1f} MiB moved {p['error']}")
    if big:
        big_rss, big_run = big
        print(f"\none {args.big_layer_mib} MiB layer: worker peak RSS {big_rss / 1024:.0f} MiB, "
              f"{big_run['seconds']:.1f} s, {big_run['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
