"""Every rule of the reference, table-driven with its boundary values, through
the operations every entry point uses. Each refusal names the field and
leaves every stored row exactly as it was."""
from __future__ import annotations

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError

from connected import operations, validation
from connected.models import ConnectedRegistry

pytestmark = pytest.mark.django_db


def snapshot() -> dict:
    """Every row of every model of the app, every column."""
    return {model.__name__: list(model.objects.order_by("pk").values())
            for model in apps.get_app_config("connected").get_models()}


def refused(field: str, call, *args, **kwargs) -> str:
    """call(...) must fail on field and store nothing; returns the rule."""
    before = snapshot()
    with pytest.raises(ValidationError) as failure:
        call(*args, **kwargs)
    assert field in failure.value.message_dict, failure.value.message_dict
    assert snapshot() == before
    return failure.value.message_dict[field][-1]


@pytest.fixture
def registry():
    return operations.create_registry("myacrregistry", "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                      check_login_server=False)


@pytest.fixture
def cr(registry):
    return operations.create_connected_registry(registry, "myconnectedregistry", ["hello-world"])


def create(registry, name="newregistry", repositories=("hello-world",), **kwargs):
    return operations.create_connected_registry(registry, name, list(repositories), **kwargs)


# --- names ------------------------------------------------------------------------

NAMES = [
    ("abcd", False), ("abcde", True), ("a" * 50, True), ("a" * 51, False), ("Hello-World", False),
    ("HelloWorld", True), ("hello_world", False), ("1abcde", False), ("abc de", False), ("héllo", False),
    ("", False),
]


@pytest.mark.parametrize("name, valid", NAMES)
def test_connected_registry_names(registry, name, valid):
    if valid:
        assert create(registry, name).name == name  # mixed case kept for display
    else:
        assert "not a valid name" in refused("name", create, registry, name)


def test_names_are_unique_case_insensitively(cr, registry):
    assert "already exists" in refused("name", create, registry, "MyConnectedRegistry")
    assert "already exists" in refused("name", operations.create_registry, "MYACRREGISTRY",
                                       "http://127.0.0.1:5001", check_login_server=False)


# --- repositories ----------------------------------------------------------------

REPOSITORIES = [
    ("hello-world", "hello-world"), ("App/Frontend", "app/frontend"), ("acr/connected-registry", None),
    ("a.b", None), ("a__b", None), ("a--b", None), ("a/b/c/d", None), ("a" * 255, None),
    ("app//x", False), ("app/", False), ("/app", False), ("a..b", False), ("a___b", False), ("-a", False),
    ("a-", False), ("a b", False), ("a:latest", False), ("a" * 256, False), ("", False),
]


@pytest.mark.parametrize("repo, stored", REPOSITORIES)
def test_repository_names(registry, repo, stored):
    if stored is False:
        assert "not a valid repository name" in refused("repositories", create, registry, repositories=[repo])
    else:
        assert create(registry, repositories=[repo]).repositories == [stored or repo]


def test_repository_duplicates_and_emptiness(cr, registry):
    assert "more than once" in refused("repositories", create, registry, repositories=["a", "A"])
    assert "at least one" in refused("repositories", create, registry, repositories=[])
    assert "already synced" in refused("add", operations.change_repositories, cr, add=["Hello-World"])
    assert "not synced" in refused("remove", operations.change_repositories, cr, remove=["nothere"])
    assert "at least one" in refused("remove", operations.change_repositories, cr, remove=["hello-world"])
    assert "more than once" in refused("add", operations.change_repositories, cr, add=["x", "x"])
    assert "both added and removed" in refused("remove", operations.change_repositories, cr, add=["x"],
                                               remove=["x"])
    assert "not a valid repository" in refused("add", operations.change_repositories, cr, add=["app//x"])


def test_at_most_500_repositories_per_scope_map(registry):
    five_hundred = [f"repo{i}" for i in range(500)]
    cr = create(registry, repositories=five_hundred)
    assert len(cr.sync_token.scope_map.repositories()) == 500
    assert "limit of 500" in refused("repositories", create, registry, "otherone",
                                     repositories=five_hundred + ["one-more"])
    assert "limit of 500" in refused("add", operations.change_repositories, cr, add=["one-more"])
    # An ancestor would exceed it by gaining a child's repository.
    assert "limit of 500" in refused("repositories", create, registry, "childone", repositories=["new-one"],
                                     parent=cr)


# --- count of connected registries ------------------------------------------------

def test_at_most_50_connected_registries_per_registry(registry):
    for i in range(50):
        create(registry, f"registry{i:02d}")
    assert "already has 50" in refused("registry", create, registry, "onetoomany")


def test_the_limit_is_configurable(registry, settings):
    settings.PORTAL = {**settings.PORTAL, "MAX_CONNECTED_REGISTRIES": 2}
    create(registry, "registry01")
    create(registry, "registry02")
    assert "already has 2" in refused("registry", create, registry, "registry03")


# --- cron -------------------------------------------------------------------------------

CRONS = [
    ("0 12 * * *", True), ("* * * * *", True), ("0 2 * * 0,6", True), ("0 0 * * 7", True), ("*/15 * * * *", True),
    ("59 23 31 12 *", True), ("0  12 * *   *", True),
    ("0 12 * * * *", "exactly 5"), ("0 12 * *", "exactly 5"), ("@reboot", "exactly 5"), ("@daily", "exactly 5"),
    ("", "5 fields"), ("61 * * * *", "minute value 61"), ("60 * * * *", "minute value 60"),
    ("0 24 * * *", "hour value 24"), ("0 0 0 * *", "day of month value 0"), ("0 0 32 * *", "day of month value 32"),
    ("0 0 * 13 *", "month value 13"), ("0 0 * 0 *", "month value 0"), ("0 0 * * 8", "day of week value 8"),
    ("0 0 31 2 *", "never occurs"), ("a b c d e", "not a valid cron"),
]


@pytest.mark.parametrize("cron, outcome", CRONS)
def test_sync_schedule(cr, cron, outcome):
    if outcome is True:
        updated = operations.update_connected_registry(cr, sync_schedule=cron)
        assert updated.sync_schedule == " ".join(cron.split())
    else:
        assert outcome in refused("sync_schedule", operations.update_connected_registry, cr, sync_schedule=cron)


# --- durations ---------------------------------------------------------------------------

WINDOWS = [
    ("PT59M", "at least PT1H"), ("PT1H", "PT1H"), ("PT60M", "PT60M"), ("pt4h", "PT4H"), ("P7D", "P7D"),
    ("P1W", "P1W"), ("PT168H", "PT168H"), ("P7DT1M", "at most P7D"), ("PT168H1S", "at most P7D"),
    ("P1M", "at most P7D"), ("P1Y", "at most P7D"), ("PT0.5H", "at least PT1H"), ("PT1.5H", "PT1.5H"),
    ("PT0S", "positive"), ("P0D", "positive"), ("-PT1H", "not an ISO 8601"), ("1h", "not an ISO 8601"),
    ("PT", "not an ISO 8601"), ("P", "not an ISO 8601"), ("4H", "not an ISO 8601"), ("P1DT", "not an ISO 8601"),
    ("4 hours", "not an ISO 8601"), ("PT4X", "not an ISO 8601"),
]


@pytest.mark.parametrize("window, outcome", WINDOWS)
def test_sync_window(cr, window, outcome):
    if outcome.startswith("P"):
        updated = operations.update_connected_registry(cr, sync_schedule="0 12 * * *", sync_window=window)
        assert updated.sync_window == outcome
    else:
        assert outcome in refused("sync_window", operations.update_connected_registry, cr,
                                  sync_schedule="0 12 * * *", sync_window=window)


TTLS = [
    ("PT23H59M", "at least P1D"), ("P1D", "P1D"), ("PT24H", "PT24H"), ("P2D", "P2D"), ("P90D", "P90D"),
    ("P91D", "at most P90D"), ("P90DT1S", "at most P90D"), ("P1M", "P1M"), ("P3M", "P3M"),
    ("P3M1D", "at most P90D"), ("P1Y", "at most P90D"), ("P0D", "positive"), ("1d", "not an ISO 8601"),
    ("PT", "not an ISO 8601"), ("P2DT", "not an ISO 8601"), ("-P2D", "not an ISO 8601"),
]


@pytest.mark.parametrize("ttl, outcome", TTLS)
def test_message_ttl(cr, ttl, outcome):
    if outcome.startswith("P"):
        assert operations.update_connected_registry(cr, message_ttl=ttl).message_ttl == outcome
    else:
        assert outcome in refused("message_ttl", operations.update_connected_registry, cr, message_ttl=ttl)


def test_window_defaults(registry, cr):
    assert (cr.sync_schedule, cr.sync_window, cr.message_ttl) == ("* * * * *", None, "P2D")
    scheduled = create(registry, "scheduled", sync_schedule="0 12 * * *")
    assert scheduled.sync_window == "PT1H"  # a non-continuous schedule without a window
    assert operations.update_connected_registry(cr, sync_schedule="0 * * * *").sync_window == "PT1H"
    # A later schedule change keeps the window it has.
    operations.update_connected_registry(cr, sync_window="PT4H")
    assert operations.update_connected_registry(cr, sync_schedule="0 0 * * *").sync_window == "PT4H"


# --- mode and parent ---------------------------------------------------------------------

MODES = [("ReadOnly", "ReadOnly", True), ("ReadOnly", "ReadWrite", False), ("ReadWrite", "ReadOnly", True),
         ("ReadWrite", "ReadWrite", True), ("readwrite", "readonly", True), ("ReadOnly", "Mirror", None)]


@pytest.mark.parametrize("parent_mode, child_mode, allowed", MODES)
def test_mode_and_the_parents_mode(registry, parent_mode, child_mode, allowed):
    parent = create(registry, "parentone", mode=parent_mode)
    if allowed:
        assert create(registry, "childone", mode=child_mode, parent=parent).mode == child_mode.replace(
            "read", "Read").replace("only", "Only").replace("write", "Write")
    else:
        rule = refused("mode", create, registry, "childone", mode=child_mode, parent=parent)
        assert ("ReadOnly parent" in rule) if allowed is False else ("not a valid mode" in rule)


def test_mode_and_parent_are_fixed_after_creation(registry, cr):
    other = create(registry, "otherone", mode="ReadWrite")
    assert "cannot be changed after creation" in refused("mode", operations.update_connected_registry, cr,
                                                         mode="ReadWrite")
    assert "cannot be changed after creation" in refused("parent", operations.update_connected_registry, cr,
                                                         parent=other)
    # The model itself refuses, whatever saves it (the admin's forms call full_clean).
    child = create(registry, "childone", parent=cr)
    stored = ConnectedRegistry.objects.get(pk=child.pk)
    stored.parent = None
    with pytest.raises(ValidationError) as failure:
        stored.full_clean()
    assert "parent" in failure.value.message_dict
    stored = ConnectedRegistry.objects.get(pk=cr.pk)
    stored.parent = child  # a cycle, too
    with pytest.raises(ValidationError) as failure:
        stored.full_clean()
    assert "parent" in failure.value.message_dict


def test_a_parent_from_another_registry_is_refused(registry, cr):
    other = operations.create_registry("otherregistry", "http://127.0.0.1:5009", data_endpoint_enabled=True,
                                       check_login_server=False)
    assert "not a connected registry of" in refused("parent", create, other, "childone", parent=cr)


# --- tokens, passwords, protocols --------------------------------------------------------

@pytest.mark.parametrize("days, rule", [(0, "out of range"), (1, None), (3650, None), (3651, "out of range"),
                                        ("x", "not a whole number"), ("1.5", "not a whole number"),
                                        (-1, "out of range")])
def test_password_expiration_days(cr, days, rule):
    from connected import credentials

    token = cr.sync_token
    if rule is None:
        assert credentials.generate_password(token, 1, days)["expires_at"] is not None
    else:
        assert rule in refused("expiration_in_days", credentials.generate_password, token, 1, days)


@pytest.mark.parametrize("slot, valid", [(1, True), (2, True), ("2", True), (0, False), (3, False), ("x", False)])
def test_password_slots(cr, slot, valid):
    from connected import credentials

    if valid:
        assert credentials.generate_password(cr.sync_token, slot)["name"] == f"password{int(slot)}"
    else:
        assert "use 1 or 2" in refused("password", credentials.generate_password, cr.sync_token, slot)


@pytest.mark.parametrize("status, valid", [("enabled", True), ("disabled", True), ("Disabled", True),
                                           ("off", False), ("", False)])
def test_token_status(cr, status, valid):
    from connected import credentials

    if valid:
        assert credentials.update_token_status(cr.sync_token, status).status == status.lower()
    else:
        assert "enabled or disabled" in refused("status", credentials.update_token_status, cr.sync_token, status)


def test_validation_functions_do_not_touch_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        validation.validate_cron("0 12 * * *")
        validation.validate_sync_window("PT4H")
        validation.validate_message_ttl("P2D")
        validation.normalize_repositories(["Hello-World"])
        validation.validate_name("myconnectedregistry")
