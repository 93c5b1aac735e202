"""The portal as the token service of its registries (distribution's
`auth: token`): the parent registry and every connected registry send their
clients here for a JWT that says what they may do.

Modules: naming (service names, pure), keys (the signing key and its
certificate), jwt (claims and signing), decisions (scope maps x requested
scopes -> granted actions, pure), authenticate (credentials, slow-down,
audit), sealed (the worker's encrypted copy of sync-token passwords),
registry_config (auth blocks and complete distribution configs), views, urls.
Nothing here is imported by connected.models, so naming stays importable
without Django (devtools.demo uses it).
"""
