"""The "Support staff" group: an is_staff user in it can use the admin to
view every model of the portal and change connected registries, registries
and tokens (through the operations, audited); it cannot add or delete."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Support staff"
VIEW = ("registry", "connectedregistry", "syncrun", "syncruntag", "scopemap", "token", "auditevent")
CHANGE = ("registry", "connectedregistry", "token")


def create_support_staff(apps, schema_editor):
    # Permissions are normally made after the last migration (post_migrate);
    # make this app's exist now so the group can be given them.
    app_config = apps.get_app_config("connected")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, using=schema_editor.connection.alias, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    codenames = [f"view_{model}" for model in VIEW] + [f"change_{model}" for model in CHANGE]
    permissions = list(Permission.objects.using(schema_editor.connection.alias)
                       .filter(content_type__app_label="connected", codename__in=codenames))
    missing = set(codenames) - {p.codename for p in permissions}
    if missing:
        raise RuntimeError(f"permissions missing for the support staff group: {sorted(missing)}")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=GROUP)
    group.permissions.add(*permissions)


def remove_support_staff(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name=GROUP).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("connected", "0004_run_progress"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_support_staff, remove_support_staff),
    ]
