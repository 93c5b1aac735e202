"""Deleting one tag on a distribution registry without touching its siblings.

Distribution deletes manifests only by digest, which drops every tag on that
digest. To delete just `repo:tag`, point the tag at a manifest nobody else
uses (a tiny image that names the tag and a nonce), then delete that
manifest by digest: the other tags of the old digest stay.
"""
from __future__ import annotations

import json
import secrets

from connected.registry_client import Manifest, RegistryClient
from connected.registry_client.manifest import OCI_MANIFEST, sha256_digest

EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_DIGEST = sha256_digest(EMPTY_CONFIG)
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"


def tombstone_for(repo: str, tag: str) -> Manifest:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_CONFIG_DIGEST, "size": len(EMPTY_CONFIG)},
        "layers": [],
        "annotations": {"io.registry-portal.deleting": f"{repo}:{tag}", "io.registry-portal.nonce":
                        secrets.token_hex(8)},
    }
    return Manifest.from_bytes(json.dumps(body, separators=(",", ":")).encode(), OCI_MANIFEST)


def delete_tag(client: RegistryClient, repo: str, tag: str) -> None:
    """Remove repo:tag from the registry; other tags on its digest survive."""
    if not client.blob_exists(repo, EMPTY_CONFIG_DIGEST):
        client.upload_blob(repo, EMPTY_CONFIG_DIGEST, len(EMPTY_CONFIG), [EMPTY_CONFIG])
    tombstone = tombstone_for(repo, tag)
    client.put_manifest(repo, tag, tombstone)
    client.delete_manifest(repo, tombstone.digest)
