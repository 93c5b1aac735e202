"""Shared fixtures: real distribution registries and a private Redis, each on
a free loopback port, started for the test session or per test."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.processes import start_redis, start_registry, stop_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _need(binary: str):
    if not shutil.which(binary):
        pytest.fail(f"{binary} is not installed: run ./scripts/test, which installs it")


@pytest.fixture
def registry_factory(tmp_path):
    """Start registries on demand: registry_factory(auth=None) -> RegistryProcess.
    Every registry started is stopped when the test ends."""
    _need("docker-registry")
    started = []

    def start(name: str = "reg", **kwargs):
        reg = start_registry(tmp_path / f"{name}-{len(started)}", **kwargs)
        started.append(reg)
        return reg

    yield start
    for reg in started:
        reg.stop()


@pytest.fixture
def parent_registry(registry_factory):
    return registry_factory("parent")


@pytest.fixture
def child_registry(registry_factory):
    return registry_factory("child")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server for the session (CI starts with none we can rely on)."""
    _need("redis-server")
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_redis_auth_file(monkeypatch):
    # A REGISTRY_AUTH_FILE in the environment breaks docker-registry and
    # confuses skopeo; tests never want it.
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))


@pytest.fixture
def portal(tmp_path, redis_server):
    """Run manage.py and Celery processes (portal.start("worker", ...)) against
    a private data directory (SQLite) and the private Redis; every process
    started is stopped at the end. portal.environ may be changed before start."""
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DATABASE_URL"))}
    env.update(PORTAL_DATA_DIR=str(tmp_path / "portal"), REDIS_URL=redis_server.url,
               PORTAL_DISPATCH_INTERVAL="2", PORTAL_CONTINUOUS_INTERVAL="5", PYTHONUNBUFFERED="1")
    procs = []

    class Portal:
        data_dir = tmp_path / "portal"
        environ = env

        def manage(self, *args, check=True):
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=180)
            if check and done.returncode != 0:
                raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
            return done

        def start(self, *celery_args, name):
            log = open(tmp_path / f"{name}.log", "wb")
            proc = subprocess.Popen([str(BIN / "celery"), "-A", "registry_portal", *celery_args], cwd=ROOT,
                                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            return proc

        def serve(self):
            """Start the portal's web server (gunicorn) on a free port, with
            PORTAL_URL set to it for every process started afterwards;
            returns the URL."""
            from devtools.processes import free_port, wait_for_port

            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env["PORTAL_URL"] = url
            log = open(tmp_path / "web.log", "wb")
            proc = subprocess.Popen([str(BIN / "gunicorn"), "registry_portal.wsgi", "--workers", "2",
                                     "--bind", f"127.0.0.1:{port}", "--timeout", "60"], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            wait_for_port(port, timeout=30, proc=proc)
            return url

        def events_secret(self, registry, connected_registry=None):
            """A new events secret for the registry (or connected registry)."""
            import json

            args = ["acr", "events-secret", "generate", "--registry", registry, "--yes"]
            if connected_registry:
                args += ["--connected-registry", connected_registry]
            return json.loads(self.manage(*args).stdout)["header"].split(" ", 2)[-1]

        def runs(self):
            with sqlite3.connect(self.data_dir / "portal.sqlite3") as db:
                db.row_factory = sqlite3.Row
                return [dict(r) for r in db.execute(
                    "SELECT r.id, c.name AS registry, r.trigger, r.scope, r.status, r.started_at, r.finished_at, "
                    "r.error FROM connected_syncrun r JOIN connected_connectedregistry c "
                    "ON c.id = r.connected_registry_id ORDER BY r.id")]

    p = Portal()
    p.manage("migrate", "--noinput")
    yield p
    for proc in procs:
        stop_process(proc, timeout=20)
