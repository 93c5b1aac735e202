"""Every command of the seed document, verbatim with `az` replaced by
`python manage.py`, in the document's order, each in a real process against
real registries, each checked for its effect.

The commands are read from the seed (a copy in tests/data, checked against
/work/shared/seeds when that exists), so a command the test forgot would fail
the count below. Steps marked `setup` are not from the seed: they make the
next seed command meaningful (the seed creates `myconnectedregistry` four
times, so it is deleted in between; `--remove "old-repo"` needs old-repo)."""
from __future__ import annotations

import json
import os
import pty
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.hashers import check_password

from devtools.images import ImageSpec, populate

pytestmark = pytest.mark.registries

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
SEED = Path(__file__).resolve().parent / "data" / "seed-sync-configuration.md.txt"
SHARED_SEEDS = Path("/work/shared/seeds")
CONNECTION_STRING = re.compile(
    r"^ConnectedRegistryName=myconnectedregistry;SyncTokenName=myconnectedregistry-sync-token;"
    r"SyncTokenPassword=(?P<password>[A-Za-z0-9_-]{32});ParentGatewayEndpoint=(?P<gateway>[^;]+);"
    r"ParentEndpointProtocol=https$")


def seed_commands(text: str) -> list[str]:
    """The `az ...` commands of the document's azurecli blocks, backslash
    continuations joined, in order."""
    commands = []
    for block in re.findall(r"```azurecli\n(.*?)```", text, re.S):
        current = None
        for line in block.splitlines():
            if current is None and not line.strip().startswith("az "):
                continue
            current = line if current is None else current + "\n" + line
            if not line.rstrip().endswith("\\"):
                commands.append(current)
                current = None
    return commands


def test_the_seed_copy_is_the_seed():
    shared = sorted(SHARED_SEEDS.glob("*.txt")) if SHARED_SEEDS.is_dir() else []
    if not shared:
        pytest.skip("no /work/shared/seeds here")
    assert SEED.read_text() in [p.read_text() for p in shared]


class Portal:
    """`python manage.py` in real processes, with a private data directory."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "DJANGO_SETTINGS_MODULE")}
        self.env["PORTAL_DATA_DIR"] = str(data_dir)

    def run(self, args: list[str], tty_answer: str | None = None, **extra_env) -> subprocess.CompletedProcess:
        """Run manage.py; with tty_answer, stdin is a terminal that types it."""
        command = [sys.executable, str(MANAGE), *args]
        env = {**self.env, **extra_env}
        if tty_answer is None:
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180,
                                  stdin=subprocess.DEVNULL)
        controller, terminal = pty.openpty()
        try:
            proc = subprocess.Popen(command, env=env, stdin=terminal, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            os.write(controller, tty_answer.encode())
            out, err = proc.communicate(timeout=180)
        finally:
            os.close(terminal)
            os.close(controller)
        return subprocess.CompletedProcess(command, proc.returncode, out, err)

    def ok(self, args, **kwargs) -> str:
        result = self.run(args, **kwargs)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, args, **kwargs):
        return json.loads(self.ok(args, **kwargs))

    def error(self, args) -> str:
        result = self.run(args)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ERROR: "), result.stderr
        return lines[0]

    def rows(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "portal.sqlite3") as db:
            return db.execute(sql, params).fetchall()

    def cr(self, *columns: str) -> tuple:
        return self.rows(f"select {', '.join(columns)} from connected_connectedregistry "
                         "where name = 'myconnectedregistry'")[0]

    def scope_repositories(self) -> list[str]:
        actions = self.json(["acr", "scope-map", "show", "--registry", "myacrregistry",
                             "--name", "myconnectedregistry-sync-scope-map"])["actions"]
        return [a.split("/", 1)[1].rsplit("/", 2)[0] for a in actions if a.endswith("/content/read")]

    def password_hashes(self) -> tuple[str, str]:
        return self.rows("select password1_hash, password2_hash from connected_token "
                         "where name = 'myconnectedregistry-sync-token'")[0]


def argv(seed_command: str) -> list[str]:
    args = shlex.split(seed_command.replace("\\\n", " "))
    assert args[0] == "az"
    return args[1:]


CR_ARGS = ["--registry", "myacrregistry", "--name", "myconnectedregistry"]


def test_every_seed_command(tmp_path, parent_registry, child_registry):
    commands = seed_commands(SEED.read_text())
    assert len(commands) == 20  # the document's count: none may be left out below
    seed = iter(commands)
    portal = Portal(tmp_path / "data")
    portal.ok(["migrate", "-v0"])

    def next_seed(expected_start: str) -> list[str]:
        args = argv(next(seed))
        assert " ".join(args).startswith(expected_start), args
        return args

    def delete_cr():  # setup: the seed creates the same name again
        assert portal.ok(["acr", "connected-registry", "delete", *CR_ARGS, "--yes"]).startswith("deleted ")
        assert portal.rows("select count(*) from connected_token")[0][0] == 0
        assert portal.rows("select count(*) from connected_scopemap")[0][0] == 0

    # setup: the registry, its data endpoint still disabled.
    portal.ok(["acr", "create", "--name", "myacrregistry", "--login-server", parent_registry.url])

    # --- Default Behavior (Continuous Sync) ---
    args = next_seed("acr connected-registry create --registry myacrregistry --name myconnectedregistry")
    refused = portal.error(args)
    assert refused.startswith("ERROR: --registry: the data endpoint of registry 'myacrregistry' is disabled")
    assert "python manage.py acr update --name myacrregistry --data-endpoint-enabled" in refused
    assert portal.rows("select count(*) from connected_connectedregistry")[0][0] == 0
    portal.ok(["acr", "update", "--name", "myacrregistry", "--data-endpoint-enabled"])  # setup (the seed's last)
    created = portal.json(args)
    assert created["repositories"] == ["hello-world"]
    assert created["parent"]["syncProperties"]["schedule"] == "* * * * *"
    assert created["parent"]["syncProperties"]["tokenId"] == \
        "/registries/myacrregistry/tokens/myconnectedregistry-sync-token"
    assert portal.scope_repositories() == ["hello-world"]

    # --- Scheduled Sync ---
    portal.json(next_seed("acr connected-registry update"))
    assert portal.cr("sync_schedule", "sync_window") == ("0 12 * * *", "PT4H")

    # --- Selecting Repositories to Sync ---
    delete_cr()
    portal.json(next_seed("acr connected-registry create"))
    assert json.loads(portal.cr("repositories")[0]) == ["hello-world", "app/frontend", "app/backend"]
    assert portal.scope_repositories() == ["hello-world", "app/frontend", "app/backend"]

    # --- Adding / Removing Repositories ---
    portal.json(next_seed("acr connected-registry repo"))
    assert portal.scope_repositories() == ["hello-world", "app/frontend", "app/backend", "new-repo"]
    portal.ok(["acr", "connected-registry", "repo", *CR_ARGS, "--add", "old-repo"])  # setup
    portal.json(next_seed("acr connected-registry repo --registry myacrregistry --name myconnectedregistry "
                          "--remove"))
    assert json.loads(portal.cr("repositories")[0]) == ["hello-world", "app/frontend", "app/backend", "new-repo"]
    assert portal.scope_repositories() == ["hello-world", "app/frontend", "app/backend", "new-repo"]

    # --- Example 1: continuous, with the runtime image ---
    delete_cr()
    created = portal.json(next_seed("acr connected-registry create"))
    assert created["repositories"] == ["hello-world", "acr/connected-registry"]
    assert created["parent"]["syncProperties"]["syncWindow"] is None

    # --- Example 2: daily window ---
    delete_cr()
    portal.json(next_seed("acr connected-registry create"))
    portal.json(next_seed("acr connected-registry update"))
    assert portal.cr("sync_schedule", "sync_window") == ("0 0 * * *", "PT4H")
    # --- Example 3: hourly (the window stays) ---
    portal.json(next_seed("acr connected-registry update"))
    assert portal.cr("sync_schedule", "sync_window") == ("0 * * * *", "PT4H")
    # --- Example 4: every minute = continuous (the window is ignored) ---
    shown = portal.json(next_seed("acr connected-registry update"))
    assert portal.cr("sync_schedule")[0] == "* * * * *"
    assert shown["parent"]["syncProperties"]["syncWindow"] is None
    # --- Example 5: weekend ---
    portal.json(next_seed("acr connected-registry update"))
    assert portal.cr("sync_schedule", "sync_window") == ("0 2 * * 0,6", "PT12H")

    # setup: a deployed instance, synced once (the worker's task runs in process).
    populate(parent_registry.host, [ImageSpec("hello-world", "1.0")])
    portal.ok(["acr", "connected-registry", "activate", *CR_ARGS, "--login-server", child_registry.url],
              CELERY_TASK_ALWAYS_EAGER="1")
    assert portal.cr("activation_status", "connection_state") == ("Active", "Online")

    # --- CLI Method: show --output table ---
    header, dashes, row = portal.ok(next_seed("acr connected-registry show")).splitlines()
    assert re.split(r"\s{2,}", header) == ["NAME", "MODE", "CONNECTION STATE", "PARENT", "LOGIN SERVER",
                                           "LAST SYNC (UTC)", "SYNC SCHEDULE", "SYNC WINDOW", "SYNC STATE"]
    assert set(dashes) == {"-", " "}
    cells = re.split(r"\s{2,}", row)
    assert cells[:5] == ["myconnectedregistry", "ReadOnly", "Online", "myacrregistry", child_registry.url]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells[5])
    assert cells[6:] == ["0 2 * * 0,6", "PT12H", "succeeded"]

    # --- Regenerating Sync Token Passwords (no --yes: asks on a terminal) ---
    generate = ["acr", "token", "credential", "generate", "--registry", "myacrregistry",  # setup
                "--name", "myconnectedregistry-sync-token"]
    password2 = portal.json(generate + ["--password2"])["passwords"][0]["value"]
    portal.json(generate + ["--password1"])  # a deployed instance holds it: replacing it asks
    old_hash1 = portal.password_hashes()[0]
    args = next_seed("acr connected-registry get-settings")
    assert "--yes" not in args
    assert "add --yes" in portal.error(args)  # no terminal, no confirmation: refused
    assert portal.password_hashes()[0] == old_hash1
    result = portal.run(args, tty_answer="y\n")
    assert result.returncode == 0, result.stderr
    assert "Continue? (y/N)" in result.stderr
    settings = json.loads(result.stdout)
    assert list(settings) == ["ACR_REGISTRY_CONNECTION_STRING"]
    match = CONNECTION_STRING.match(settings["ACR_REGISTRY_CONNECTION_STRING"])
    assert match and match["gateway"] == parent_registry.host
    password1 = match["password"]
    hash1, hash2 = portal.password_hashes()
    assert password1 not in hash1 and check_password(password1, hash1)
    assert check_password(password2, hash2)  # the other slot keeps working

    # --- Sync Token Scope Map ---
    scope_map_id = portal.ok(next_seed("acr token show"))
    assert scope_map_id == '"/registries/myacrregistry/scopeMaps/myconnectedregistry-sync-scope-map"\n'

    # --- Disabling a Connected Registry ---
    assert portal.json(next_seed("acr token update"))["status"] == "disabled"
    refused = portal.error(["acr", "connected-registry", "resync", *CR_ARGS])  # setup: sync stops
    assert "sync token 'myconnectedregistry-sync-token' is disabled" in refused
    details = portal.json(["acr", "connected-registry", "show", *CR_ARGS, "--query", "statusDetails"])
    assert [d["code"] for d in details] == ["SyncTokenDisabled"]
    assert "--status enabled" in details[0]["description"]
    assert "cannot be deleted while it exists" in portal.error(
        ["acr", "token", "delete", "--registry", "myacrregistry", "--name", "myconnectedregistry-sync-token",
         "--yes"])

    # --- Check Last Sync Time / Connection State ---
    last_sync = json.loads(portal.ok(next_seed("acr connected-registry show")))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", last_sync)
    # It answers, but its sync is stopped (the details say why): Unhealthy.
    assert portal.ok(next_seed("acr connected-registry show")) == '"Unhealthy"\n'

    # --- Repository Not Syncing ---
    portal.json(next_seed("acr connected-registry repo"))
    assert portal.scope_repositories() == ["hello-world", "missing-repo"]

    # --- Sync Token Expired/Invalid ---
    settings = portal.json(next_seed("acr connected-registry get-settings"))
    new_password1 = CONNECTION_STRING.match(settings["ACR_REGISTRY_CONNECTION_STRING"])["password"]
    hash1, hash2 = portal.password_hashes()
    assert check_password(new_password1, hash1) and not check_password(password1, hash1)
    assert check_password(password2, hash2)
    audit = json.dumps(portal.rows("select * from connected_auditevent"))
    for secret in (password1, new_password1, password2, hash1, hash2):
        assert secret not in audit

    # --- Data Endpoint Not Enabled ---
    portal.ok(["acr", "token", "update", "--registry", "myacrregistry", "--name",  # setup
               "myconnectedregistry-sync-token", "--status", "enabled"])
    portal.ok(["acr", "update", "--name", "myacrregistry", "--data-endpoint-enabled", "false"])  # setup
    assert "data endpoint of registry 'myacrregistry' is disabled" in portal.error(
        ["acr", "connected-registry", "resync", *CR_ARGS])
    enabled = portal.json(next_seed("acr update --name myacrregistry --data-endpoint-enabled"))
    assert enabled["dataEndpointEnabled"] is True
    assert portal.ok(["acr", "connected-registry", "resync", *CR_ARGS]).startswith("sync run ")

    assert next(seed, None) is None  # every command of the seed was run
