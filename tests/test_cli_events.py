"""`acr events-secret generate` and the flags that make registry configs
(--portal-url, --http-addr, --registry-config, --output-dir): bad values are
refused naming the flag before any secret or password is replaced."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connected import events, operations
from connected.audit import AuditEvent
from connected.messages import EventSource
from connected.models import Token

pytestmark = pytest.mark.django_db

R, N = "myacrregistry", "myconnectedregistry"
GENERATE = ("events-secret", "generate", "--registry", R, "--yes")
SETTINGS = ("connected-registry", "get-settings", "--registry", R, "--name", N, "--generate-password", "1", "--yes")


@pytest.fixture
def cr():
    registry = operations.create_registry(R, "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                          check_login_server=False)
    return operations.create_connected_registry(registry, N, ["hello-world"])


def acr(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("acr", *args, stdout=out, stderr=err, stdin=io.StringIO())
    return out.getvalue(), err.getvalue()


def acr_error(*args) -> str:
    with pytest.raises(CommandError) as failure:
        acr(*args)
    return str(failure.value)


def state():
    """What a refused command must leave as it was."""
    return (sorted(EventSource.objects.values_list("pk", "secret_sha256")),
            sorted(Token.objects.values_list("pk", "password1_hash", "password2_hash")),
            AuditEvent.objects.count())


def test_generate_for_the_registry_and_for_a_connected_registry(cr, settings):
    settings.PORTAL = {**settings.PORTAL, "PUBLIC_URL": "http://portal.example:8100"}
    out, err = acr(*GENERATE)
    shown = json.loads(out)
    secret = shown["header"].removeprefix("Authorization: Bearer ")
    assert shown["eventsUrl"] == "http://portal.example:8100/events/"
    assert shown["notifications"]["endpoints"][0]["headers"] == {"Authorization": [f"Bearer {secret}"]}
    assert EventSource.authenticate(secret).connected_registry is None
    assert "shown this once" in err

    out, _ = acr(*GENERATE, "--connected-registry", N, "--portal-url", "https://portal.example/base/")
    shown = json.loads(out)
    assert shown["eventsUrl"] == "https://portal.example/base/events/"
    assert EventSource.authenticate(shown["header"].split()[-1]).connected_registry == cr


@pytest.mark.parametrize("value", ["notaurl", "ftp://portal", "javascript:alert(1)", "http://h/with space",
                                   "http://user:pw@portal", "http://portal:99999", "http://portal/?q=1", ""])
def test_a_bad_portal_url_is_refused_and_the_old_secret_keeps_working(cr, value):
    _, secret = events.generate_secret(cr.registry)
    before = state()
    message = acr_error(*GENERATE, "--portal-url", value)
    assert message.startswith("--portal-url: ")
    assert "pw@" not in message  # credentials are never echoed
    assert state() == before and EventSource.authenticate(secret) is not None


def test_an_empty_connected_registry_does_not_mean_the_registry(cr):
    events.generate_secret(cr.registry)
    before = state()
    assert acr_error(*GENERATE, "--connected-registry", "").startswith(
        "--connected-registry: must name a connected registry; leave the flag out")
    assert acr_error(*GENERATE, "--connected-registry", "nosuchone").startswith("--connected-registry: ")
    assert state() == before


@pytest.mark.parametrize("flags, flag", [
    (("--portal-url", "notaurl"), "--portal-url"),
    (("--http-addr", "5000"), "--http-addr"),
    (("--http-addr", ":0"), "--http-addr"),
    (("--http-addr", "host:port"), "--http-addr"),
])
def test_get_settings_checks_its_flags_before_replacing_the_password(cr, tmp_path, flags, flag):
    before = state()
    message = acr_error(*SETTINGS, "--registry-config", str(tmp_path / "deploy"), *flags)
    assert message.startswith(flag + ": ")
    assert state() == before and not (tmp_path / "deploy" / "config.yml").exists()


def test_get_settings_refuses_a_file_as_its_directory(cr, tmp_path):
    (tmp_path / "afile").write_text("")
    before = state()
    assert acr_error(*SETTINGS, "--registry-config", str(tmp_path / "afile")).startswith("--registry-config: ")
    assert state() == before


def test_token_service_export_checks_the_portal_url_and_the_connected_registry(cr, tmp_path):
    export = ("token-service", "export", "--registry", R, "--output-dir", str(tmp_path / "out"))
    assert acr_error(*export, "--portal-url", "ftp://x").startswith("--portal-url: ")
    assert acr_error(*export, "--connected-registry", "").startswith("--connected-registry: ")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    out, _ = acr(*export, "--connected-registry", N, "--portal-url", "http://127.0.0.1:8100")
    assert json.loads(out)["realm"] == "http://127.0.0.1:8100/token/"
