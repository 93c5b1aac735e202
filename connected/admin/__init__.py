"""The Django admin for support staff: every model of the portal, with
changes going through the same operations as the CLI and the pages, each
audited as Actor(<user>, "admin"). See README.md, "Admin for support staff"."""
from . import access, audit, registries, runs, sync_messages  # noqa: F401  (each registers its model admins)
