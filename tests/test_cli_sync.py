"""`acr connected-registry resync --wait` end to end: real registries, the
real worker task run eagerly (in this process) when the run is committed."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connected.models import SyncRun
from devtools.images import ImageSpec, populate, remote_digest
from registry_portal.celery import app as celery_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.registries]


@pytest.fixture
def eager_worker():
    # queue_sync hands runs over on commit; eager mode runs them right there.
    conf = celery_app.conf
    saved = {"task_always_eager": conf.task_always_eager, "task_eager_propagates": conf.task_eager_propagates}
    conf.update(task_always_eager=True, task_eager_propagates=True)
    yield
    conf.update(saved)


def acr(*args):
    out = io.StringIO()
    call_command("acr", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def deployed(eager_worker, parent_registry, child_registry):
    pushed = populate(parent_registry.host, [ImageSpec("hello-world", "1.0")])
    acr("create", "--name", "myacrregistry", "--login-server", parent_registry.url, "--data-endpoint-enabled")
    acr("connected-registry", "create", "--registry", "myacrregistry", "--name", "myconnectedregistry",
        "--repository", "hello-world", "--login-server", child_registry.url)
    return pushed[0]


def test_resync_wait_prints_the_outcome_of_a_successful_run(deployed, child_registry):
    out = acr("connected-registry", "resync", "--registry", "myacrregistry", "--name", "myconnectedregistry",
              "--wait", "--timeout", "120")
    run = SyncRun.objects.filter(trigger=SyncRun.Trigger.MANUAL).get()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert f"run {run.pk}: succeeded" in out
    # The initial sync copied the tag; the manual one finds it in sync.
    assert "tags: 0 copied, 1 already in sync, 0 failed" in out
    assert remote_digest(child_registry.host, "hello-world", "1.0") == deployed.digest


def test_resync_wait_fails_when_the_run_fails(deployed, child_registry):
    child_registry.stop()
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("acr", "connected-registry", "resync", "--registry", "myacrregistry", "--name",
                     "myconnectedregistry", "--wait", "--timeout", "120", stdout=out)
    run = SyncRun.objects.filter(trigger=SyncRun.Trigger.MANUAL).get()
    assert run.status != SyncRun.Status.SUCCEEDED
    assert str(failure.value).startswith(f"run {run.pk} ended ")
    assert f"run {run.pk}: {run.status}" in out.getvalue()
