"""The Celery application: configured from Django settings (CELERY_*)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_portal.settings")

app = Celery("registry_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _beat_schedule(sender, **kwargs):
    from django.conf import settings

    sender.conf.beat_schedule = {
        "dispatch-due-syncs": {
            "task": "connected.tasks.dispatch_due_syncs",
            "schedule": settings.PORTAL["DISPATCH_INTERVAL_SECONDS"],
        },
        "prune-runs": {"task": "connected.tasks.prune_runs", "schedule": 3600.0},
        "check-health": {"task": "connected.tasks.check_health",
                         "schedule": settings.PORTAL["HEALTH_CHECK_INTERVAL_SECONDS"]},
    }
