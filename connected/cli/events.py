"""`acr events-secret generate`: the secret a registry sends its webhook
events with (shown once), and the notifications block that uses it."""
from __future__ import annotations

from connected import events, validation
from connected.tokenservice.registry_config import notifications_block

from . import base


def secret_generate(cmd, registry, connected_registry, portal_url, yes, **_):
    reg = base.registry(registry)
    cr = base.optional_connected_registry(reg, connected_registry, "--connected-registry")
    portal_url = base.checked(validation.validate_portal_url, portal_url, "portal_url")
    who = f"connected registry '{cr.name}'" if cr else f"registry '{reg.name}'"
    if (cr.event_source_or_none() if cr else reg.event_sources.filter(connected_registry__isnull=True).exists()):
        base.confirm(cmd, f"A new events secret of {who} replaces the current one, which stops working "
                          "(its events are refused until its config has the new one).", yes)
    source, secret = events.generate_secret(reg, cr, actor=cmd.actor)
    cmd.emit({"source": source.describe(), "eventsUrl": notifications_block(secret, portal_url)["endpoints"][0]["url"],
              "header": f"Authorization: Bearer {secret}",
              "notifications": notifications_block(secret, portal_url)})
    base.warn(cmd, [f"the secret is shown this once; put the notifications block into the config of {who} "
                    "and restart it. It cannot be retrieved again."])


HANDLERS = {"events_secret_generate": secret_generate}
