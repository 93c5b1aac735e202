"""`python manage.py acr ...` as a user runs it: a real process with its own
SQLite database, checked for exit codes, one-line errors and no tracebacks.
The seed document's commands run verbatim with `az` replaced."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.processes import free_port

pytestmark = pytest.mark.registries

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"


@pytest.fixture
def portal(tmp_path):
    """Run manage.py with a private data directory (database, broker, key)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "DJANGO_SETTINGS_MODULE")}
    env["PORTAL_DATA_DIR"] = str(tmp_path / "data")

    def run(command: str | list[str], **extra_env) -> subprocess.CompletedProcess:
        args = command.split() if isinstance(command, str) else command
        return subprocess.run([sys.executable, str(MANAGE), *args], env={**env, **extra_env},
                              capture_output=True, text=True, timeout=120)

    assert run("migrate -v0").returncode == 0
    return run


def one_error_line(result, flag: str | None) -> str:
    """The single stderr line of a failed command; it names flag unless flag is None."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ERROR: {flag}: " if flag else "ERROR: "), lines[0]
    return lines[0]


def seed(command: str) -> list[str]:
    """A seed command line (`az ...`, backslash-continued) as arguments after manage.py."""
    import shlex

    args = shlex.split(command.replace("\\\n", " "))
    assert args[0] == "az"
    return args[1:]


def test_seed_commands_verbatim(portal, parent_registry):
    created = portal(["acr", "create", "--name", "myacrregistry", "--login-server", parent_registry.url])
    assert created.returncode == 0, created.stderr

    blocked = portal(seed('az acr connected-registry create \\\n  --registry myacrregistry \\\n'
                          '  --name myconnectedregistry \\\n  --repository "hello-world"'))
    assert "--data-endpoint-enabled" in one_error_line(blocked, "--registry")

    enabled = portal(seed("az acr update --name myacrregistry --data-endpoint-enabled"))
    assert enabled.returncode == 0 and json.loads(enabled.stdout)["dataEndpointEnabled"] is True

    result = portal(seed('az acr connected-registry create \\\n  --registry myacrregistry \\\n'
                         '  --name myconnectedregistry \\\n  --repository "hello-world" "app/frontend" "app/backend"'))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["repositories"] == ["hello-world", "app/frontend", "app/backend"]

    table = portal(seed("az acr connected-registry show \\\n  --registry myacrregistry \\\n"
                        "  --name myconnectedregistry \\\n  --output table"))
    assert table.returncode == 0, table.stderr
    header, dashes, row = table.stdout.splitlines()
    assert header.startswith("NAME") and "LAST SYNC (UTC)" in header and set(dashes) == {"-", " "}
    assert row.split()[:4] == ["myconnectedregistry", "ReadOnly", "Offline", "myacrregistry"]

    last_sync = portal(seed("az acr connected-registry show \\\n  --registry myacrregistry \\\n"
                            "  --name myconnectedregistry \\\n  --query lastSync"))
    assert (last_sync.returncode, last_sync.stdout) == (0, "null\n")
    state = portal(seed("az acr connected-registry show \\\n  --registry myacrregistry \\\n"
                        "  --name myconnectedregistry \\\n  --query connectionState"))
    assert (state.returncode, state.stdout) == (0, '"Offline"\n')


def test_bad_input_is_one_line_and_stores_nothing(portal, parent_registry):
    assert portal(["acr", "create", "--name", "myacrregistry", "--login-server", parent_registry.url,
                   "--data-endpoint-enabled"]).returncode == 0
    create = ["acr", "connected-registry", "create", "--registry", "myacrregistry"]
    assert portal(create + ["--name", "existing", "--repository", "x"]).returncode == 0

    one_error_line(portal(create + ["--name", "EXISTING", "--repository", "x"]), "--name")
    one_error_line(portal(create + ["--name", "newregistry", "--repository", "Not/Valid/"]), "--repository")
    one_error_line(portal(create + ["--name", "newregistry", "--repository", "x", "--mode", "Mirror"]), "--mode")
    one_error_line(portal(create + ["--name", "newregistry", "--repository", "x", "--sync-schedule",
                                    "61 * * * *"]), "--sync-schedule")
    one_error_line(portal(create + ["--name", "newregistry", "--repository", "x", "--sync-schedule", "0 0 * * *",
                                    "--sync-window", "P8D"]), "--sync-window")
    one_error_line(portal(create + ["--name", "newregistry", "--repository", "x", "--sync-message-ttl", "PT1H"]),
                   "--sync-message-ttl")
    one_error_line(portal(create + ["--name", "newregistry", "--repository", "x", "--login-server",
                                    f"http://127.0.0.1:{free_port()}"]), "--login-server")
    one_error_line(portal(["acr", "connected-registry", "create", "--registry", "nosuchregistry", "--name",
                           "newregistry", "--repository", "x"]), "--registry")
    one_error_line(portal(["acr", "create", "--name", "otherregistry", "--login-server",
                           f"http://127.0.0.1:{free_port()}"]), "--login-server")

    listed = portal(["acr", "connected-registry", "list", "--registry", "myacrregistry"])
    assert [cr["name"] for cr in json.loads(listed.stdout)] == ["existing"]
    assert [r["name"] for r in json.loads(portal("acr list").stdout)] == ["myacrregistry"]


def test_usage_errors_and_help(portal):
    for command in ("acr --help", "acr connected-registry --help", "acr connected-registry create --help",
                    "acr connected-registry resync --help", "acr update --help"):
        result = portal(command)
        assert result.returncode == 0 and result.stdout.startswith("usage: "), command

    missing = portal("acr connected-registry create --registry myacrregistry")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        "ERROR: the following arguments are required: --name/-n "
        "(see: manage.py acr connected-registry create --help)"]
    unknown = portal("acr connected-registry show -r myacrregistry -n abcde --bogus 1")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "ERROR: unrecognized arguments: --bogus 1 (see: manage.py acr connected-registry show --help)"]
    for command in ("acr", "acr connected-registry", "acr nosuchcommand", "acr connected-registry show -r abcde "
                    "-n abcde --output yaml", "acr connected-registry resync -r abcde -n abcde --timeout soon"):
        result = portal(command)
        assert result.returncode == 2, command
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("ERROR: "), command


def test_unmigrated_database_is_one_line(tmp_path):
    env = {**os.environ, "PORTAL_DATA_DIR": str(tmp_path / "empty")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, str(MANAGE), "acr", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "ERROR: the database is not set up: run python manage.py migrate"


def test_resync_with_the_broker_down_is_one_line(portal, parent_registry, child_registry):
    assert portal(["acr", "create", "--name", "myacrregistry", "--login-server", parent_registry.url,
                   "--data-endpoint-enabled"]).returncode == 0
    assert portal(["acr", "connected-registry", "create", "--registry", "myacrregistry", "--name", "myconnected",
                   "--repository", "hello-world", "--login-server", child_registry.url]).returncode == 0
    resync = "acr connected-registry resync --registry myacrregistry --name myconnected"
    queued = portal(resync)
    assert queued.returncode == 0 and queued.stdout.startswith("sync run ")
    down = portal(resync, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert "the task broker is unreachable" in one_error_line(down, None)
