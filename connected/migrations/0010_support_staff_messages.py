"""The "Support staff" group may view sync messages, the registry events
they come from and the registries that send events (connected.admin.
sync_messages); nobody adds or changes them in the admin."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Support staff"
VIEW = ("syncmessage", "receivedevent", "eventsource")


def grant_view(apps, schema_editor):
    # As in 0005: make this app's permissions exist now (post_migrate comes later).
    app_config = apps.get_app_config("connected")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, using=schema_editor.connection.alias, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    codenames = [f"view_{model}" for model in VIEW]
    permissions = list(Permission.objects.using(db).filter(content_type__app_label="connected",
                                                            codename__in=codenames))
    missing = set(codenames) - {p.codename for p in permissions}
    if missing:
        raise RuntimeError(f"permissions missing for the support staff group: {sorted(missing)}")
    group, _ = Group.objects.using(db).get_or_create(name=GROUP)
    group.permissions.add(*permissions)


def revoke_view(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    group = Group.objects.using(schema_editor.connection.alias).filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(*group.permissions.filter(content_type__app_label="connected",
                                                           codename__in=[f"view_{m}" for m in VIEW]))


class Migration(migrations.Migration):

    dependencies = [
        ("connected", "0009_sync_messages"),
        ("connected", "0005_support_staff_group"),
    ]

    operations = [
        migrations.RunPython(grant_view, revoke_view),
    ]
