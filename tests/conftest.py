"""Shared fixtures: real distribution registries and a private Redis, each on
a free loopback port, started for the test session or per test."""
from __future__ import annotations

import os
import shutil

import pytest

from devtools.processes import start_redis, start_registry


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
