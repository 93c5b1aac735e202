"""Start real servers (distribution, redis) as child processes on free ports."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class RegistryProcess:
    """A running CNCF distribution (Debian's docker-registry) instance."""

    root: Path
    port: int
    proc: subprocess.Popen
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def registry_config(storage: Path, port: int, auth: dict | None = None,
                    notifications: dict | None = None) -> dict:
    """A distribution 2.8 config: filesystem storage, deletes enabled."""
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "devtools-not-a-secret",
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    if auth:
        config["auth"] = auth
    if notifications:
        config["notifications"] = notifications
    return config


def start_registry(root: Path, port: int | None = None, auth: dict | None = None,
                   notifications: dict | None = None, binary: str = "docker-registry") -> RegistryProcess:
    """Start a distribution registry with its storage and config under root."""
    import json

    exe = shutil.which(binary) or "/usr/bin/docker-registry"
    root = Path(root)
    (root / "storage").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config_path = root / "config.yml"
    # JSON is YAML: no YAML library needed.
    config_path.write_text(json.dumps(registry_config(root / "storage", port, auth, notifications), indent=2))
    log_path = root / "registry.log"
    # Every REGISTRY_* variable overrides the config; REGISTRY_AUTH_FILE (set by
    # podman/skopeo setups) even stops it from starting.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([exe, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    reg = RegistryProcess(root=root, port=port, proc=proc, config_path=config_path, log_path=log_path)
    try:
        wait_for_port(port, proc=proc)
        _wait_http(f"{reg.url}/v2/")
    except Exception:
        reg.stop()
        raise RuntimeError(f"docker-registry did not start on {port}:\n{reg.log()[-2000:]}")
    return reg


def _wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class RedisProcess:
    port: int
    proc: subprocess.Popen
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.proc)


def start_redis(root: Path, port: int | None = None) -> RedisProcess:
    """Start a private redis-server that keeps nothing on disk."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(root), "--logfile", str(root / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    wait_for_port(port, proc=proc)
    return RedisProcess(port=port, proc=proc, dir=root)
