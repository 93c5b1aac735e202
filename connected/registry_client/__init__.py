"""A small client for the OCI distribution protocol (distribution, Harbor,
zot…): manifests, blobs, tags, catalog, with anonymous, Basic and bearer-token
auth. It knows nothing of Django; connected.sync decides what to copy.

Modules: errors, manifest (media types, Descriptor, Manifest), auth, client
(RegistryClient, BlobStream, ping), transfer (copy_blob)."""
from .client import BlobStream, RegistryClient, ping
from .errors import AuthError, DigestMismatch, NotFound, RegistryError, Unreachable
from .manifest import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, OCI_INDEX,
                       OCI_MANIFEST, Descriptor, Manifest)
from .transfer import copy_blob

__all__ = [
    "AuthError", "BlobStream", "Descriptor", "DigestMismatch", "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES", "MANIFEST_MEDIA_TYPES", "Manifest", "NotFound", "OCI_INDEX", "OCI_MANIFEST",
    "RegistryClient", "RegistryError", "Unreachable", "copy_blob", "ping",
]
