"""The portal's pages (Django + htmx). Each view renders a full page, or for
an htmx request only the piece of that page it concerns (same template
piece). Roles and the one permission check: connected.views.base."""
from .base import ADMINISTRATORS_GROUP, is_administrator  # noqa: F401
from .checks import create_check, update_check  # noqa: F401
from .connected_registries import (connected_registry_activate, connected_registry_create,  # noqa: F401
                                   connected_registry_deactivate, connected_registry_delete,
                                   connected_registry_detail, connected_registry_list)
from .events import (connected_registry_events, connected_registry_events_secret,  # noqa: F401
                     registry_events, registry_events_secret)
from .properties import repositories_change, sync_properties_update  # noqa: F401
from .registries import home  # noqa: F401
from .runs import run_detail, sync_cancel, sync_now  # noqa: F401
from .status import status  # noqa: F401
from .tokens import generate_password, token_status  # noqa: F401
