"""`acr connected-registry ...`: create, update, repo, show, list,
get-settings, activate, deactivate, delete, resync, cancel, runs, messages."""
from __future__ import annotations

from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from connected import cli_output, client_tokens, credentials, operations, syncs, validation
from connected.models import SyncRun
from connected.tokenservice import registry_config as config_files

from . import base

CR = "python manage.py acr connected-registry"


def create(cmd, registry, name, repositories, mode, parent, login_server, sync_schedule, sync_window,
           message_ttl, log_level, **_):
    base.refuse_empty("the default", login_server=login_server, sync_schedule=sync_schedule,
                      sync_window=sync_window, message_ttl=message_ttl, log_level=log_level, mode=mode)
    reg = base.registry(registry)
    parent_cr = base.lookup(operations.get_connected_registry, reg, parent, flag="--parent") \
        if parent is not None else None
    # The rule accepts any case, but the model's choices check (run first by
    # full_clean) only knows the canonical spelling: hand it that.
    mode = validation.validate_mode(mode)
    cr = operations.create_connected_registry(
        reg, name, repositories, mode=mode, parent=parent_cr, login_server=login_server,
        sync_schedule=sync_schedule, sync_window=sync_window, message_ttl=message_ttl, log_level=log_level,
        actor=cmd.actor)
    cmd.emit(cli_output.connected_registry_to_dict(cr))
    base.warn(cmd, cr.warnings)


def update(cmd, registry, name, sync_schedule, sync_window, message_ttl, log_level, mode, parent,
           add_client_tokens=(), remove_client_tokens=(), **_):
    cr = base.connected_registry(registry, name)
    base.refuse_empty("the current value", sync_schedule=sync_schedule, sync_window=sync_window,
                      message_ttl=message_ttl, log_level=log_level, add_client_tokens=add_client_tokens,
                      remove_client_tokens=remove_client_tokens)
    properties = (sync_schedule, sync_window, message_ttl, log_level, mode, parent)
    if all(v is None for v in properties) and not add_client_tokens and not remove_client_tokens:
        raise CommandError("nothing to change: give --sync-schedule, --sync-window, --sync-message-ttl, "
                           "--log-level, --add-client-tokens or --remove-client-tokens.")
    cr.warnings = []
    if add_client_tokens or remove_client_tokens:
        # Checked first, stored with the properties below only if both pass.
        with transaction.atomic():
            client_tokens.change_client_tokens(cr, add_client_tokens, remove_client_tokens, actor=cmd.actor)
            if any(v is not None for v in properties):
                cr = _update_properties(cmd, cr, *properties)
    else:
        cr = _update_properties(cmd, cr, *properties)
    cmd.emit(cli_output.connected_registry_to_dict(cr))
    base.warn(cmd, cr.warnings)


def _update_properties(cmd, cr, sync_schedule, sync_window, message_ttl, log_level, mode, parent):
    changes = {}
    if parent is not None:
        changes["parent"] = base.lookup(operations.get_connected_registry, cr.registry, parent, flag="--parent")
    return operations.update_connected_registry(cr, sync_schedule=sync_schedule, sync_window=sync_window,
                                                message_ttl=message_ttl, log_level=log_level, mode=mode,
                                                actor=cmd.actor, **changes)


def repo(cmd, registry, name, add, remove, **_):
    cr = base.connected_registry(registry, name)
    if not add and not remove:
        raise CommandError("nothing to change: give --add REPO ... and/or --remove REPO ...")
    cr = operations.change_repositories(cr, add=add, remove=remove, actor=cmd.actor)
    cmd.emit(cli_output.connected_registry_to_dict(cr))


def show(cmd, registry, name, output, query, **_):
    cr = base.connected_registry(registry, name)
    data = cli_output.connected_registry_to_dict(cr)
    if query:
        cmd.print_query(data, query, output, "a connected registry",
                        "lastSync, connectionState or parent.syncProperties.schedule")
        return
    cmd.emit(data, output, cli_output.SHOW_COLUMNS, [cli_output.connected_registry_row(cr)])


def list_(cmd, registry, parent, no_children, output, **_):
    reg = base.registry(registry)
    root = base.lookup(operations.get_connected_registry, reg, parent, flag="--parent") if parent else None
    crs = reg.connected_registries.select_related("registry", "parent")
    rows = cli_output.tree_order(crs, root, children=not no_children)
    cmd.emit([cli_output.connected_registry_to_dict(cr) for cr, _ in rows], output, cli_output.LIST_COLUMNS,
             [cli_output.connected_registry_row(cr, depth, with_schedule=False) for cr, depth in rows])


def get_settings(cmd, registry, name, parent_protocol, generate_password, yes, registry_config=None,
                 storage_dir=None, http_addr=None, portal_url=None, **_):
    cr = base.connected_registry(registry, name)
    _, slot = credentials.check_settings_request(cr, parent_protocol, generate_password)
    if (storage_dir or http_addr) and not registry_config:
        raise CommandError("--registry-config: --storage-dir and --http-addr apply to the registry config; "
                           "give --registry-config DIR.")
    # Checked before a password is replaced, so a bad flag changes nothing.
    portal_url = base.checked(validation.validate_portal_url, portal_url, "portal_url")
    http_addr = base.checked(validation.validate_listen_address, http_addr, "http_addr")
    if registry_config:
        base.writable_dir(registry_config, "--registry-config")
    if slot is not None:
        base.confirm_replacing_password(cmd, cr.sync_token_or_none(), slot, yes)
    settings = credentials.get_settings(cr, parent_protocol, generate_password, actor=cmd.actor)
    if registry_config:
        settings.update(config_files.write_registry_config(cr, registry_config, storage_dir, http_addr, portal_url,
                                                           actor=cmd.actor))
    cmd.emit(settings)
    base.warn(cmd, credentials.settings_warnings(cr))


def activate(cmd, registry, name, login_server, **_):
    cr = base.connected_registry(registry, name)
    cr = operations.activate_connected_registry(cr, login_server, actor=cmd.actor)
    cmd.emit(cli_output.connected_registry_to_dict(cr))
    base.warn(cmd, cr.warnings)


def deactivate(cmd, registry, name, yes, **_):
    cr = base.connected_registry(registry, name)
    base.confirm(cmd, f"Deactivating '{cr.name}' unbinds its deployed instance and stops its syncs.", yes)
    operations.deactivate_connected_registry(cr, actor=cmd.actor)
    cmd.stdout.write(f"'{cr.name}' is Inactive and Offline. To activate an instance again, deploy it with the "
                     f"connection string of `{CR} get-settings --registry {cr.registry.name} --name {cr.name} "
                     f"--generate-password 1` and bind it: {CR} activate --registry {cr.registry.name} "
                     f"--name {cr.name} --login-server URL")


def delete(cmd, registry, name, yes, **_):
    cr = base.connected_registry(registry, name)
    blocker = operations.deletion_blocker(cr)
    if blocker:  # say so before asking
        raise CommandError(f"--name: {blocker}")
    base.confirm(cmd, f"Deleting '{cr.name}' also deletes its sync token and scope map.", yes)
    operations.delete_connected_registry(cr, actor=cmd.actor)
    cmd.stdout.write(f"deleted connected registry '{cr.name}' with its sync token and scope map")


def resync(cmd, registry, name, wait, timeout, **_):
    cr = base.connected_registry(registry, name)
    run = syncs.queue_sync(cr, SyncRun.Trigger.MANUAL, actor=cmd.actor)
    cmd.stdout.write(f"sync run {run.pk} queued for '{cr.name}'")
    if not (wait or timeout):
        return
    run = _wait(cmd, run, timeout)
    if not run.is_finished():
        raise CommandError(f"--timeout: run {run.pk} did not end within {timeout:g} seconds (still {run.status}).")
    if run.status != SyncRun.Status.SUCCEEDED:
        raise CommandError(f"run {run.pk} ended {run.get_status_display()}" + (f": {run.error}" if run.error else "."))


def cancel(cmd, registry, name, wait, **_):
    cr = base.connected_registry(registry, name)
    run = syncs.cancel_sync(cr, actor=cmd.actor)
    if run.is_finished():
        cmd.stdout.write(f"sync run {run.pk} of '{cr.name}' cancelled before it started")
        return
    cmd.stdout.write(f"sync run {run.pk} of '{cr.name}' is stopping")
    if wait:
        run = _wait(cmd, run, 120)
        cmd.stdout.write(cli_output.run_outcome(run))


def runs(cmd, registry, name, run, top, output, **_):
    cr = base.connected_registry(registry, name)
    if run is not None:
        found = cr.runs.filter(pk=run).first()
        if found is None:
            raise CommandError(f"--run: run {run} is not a run of '{cr.name}'.")
        data = cli_output.run_to_dict(found, with_ledger=True)
        rows = [[t["repository"], t["tag"], t["outcome"], t["digest"] or "-", t["bytes"], t["reason"] or ""]
                for t in data["ledger"]]
        cmd.emit(data, output, ["REPOSITORY", "TAG", "OUTCOME", "DIGEST", "BYTES", "REASON"], rows)
        return
    recent = list(cr.runs.order_by("-queued_at", "-pk")[:top])
    cmd.emit([cli_output.run_to_dict(r) for r in recent], output, cli_output.RUN_COLUMNS,
             [cli_output.run_row(r) for r in recent])


ALL_MESSAGES = 200


def messages(cmd, registry, name, all_messages, output, **_):
    """Pending messages, or with --all the last ALL_MESSAGES of every status;
    oldest first either way (the order the gateway serves them)."""
    cr = base.connected_registry(registry, name)
    now = timezone.now()
    if all_messages:
        found = list(cr.messages.order_by("-created_at", "-pk")[:ALL_MESSAGES])[::-1]
    else:
        found = list(cr.messages.pending(now).order_by("created_at", "pk"))
    cmd.emit([m.as_json() for m in found], output, cli_output.MESSAGE_COLUMNS,
             [cli_output.message_row(m, now) for m in found])


def _wait(cmd, run, timeout):
    """Wait for run to end, printing its outcome; a hint if no worker takes it."""
    def stuck(run):
        cmd.stderr.write(f"WARNING: run {run.pk} is still queued: no worker has taken it. Is a Celery worker "
                         "running? (celery -A registry_portal worker)")
    try:
        run = syncs.wait_for_run(run, timeout=timeout, on_stuck_in_queue=stuck)
    except KeyboardInterrupt:
        raise CommandError(f"stopped waiting; run {run.pk} goes on in the background.", returncode=130) from None
    cmd.stdout.write(cli_output.run_outcome(run))
    return run


HANDLERS = {"cr_create": create, "cr_update": update, "cr_repo": repo, "cr_show": show, "cr_list": list_,
            "cr_get_settings": get_settings, "cr_activate": activate, "cr_deactivate": deactivate,
            "cr_delete": delete, "cr_resync": resync, "cr_cancel": cancel, "cr_runs": runs,
            "cr_messages": messages}
