"""Manifests and descriptors. A Manifest keeps the exact bytes it was read
from: its digest is over those bytes, so it must never be re-serialised."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

# Content types that say nothing about which manifest this is.
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})


def sha256_digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def is_digest(ref: str) -> bool:
    """A tag can't contain ':', a digest always does."""
    return ":" in ref


def digest_of(content: bytes, algorithm: str) -> str | None:
    """content's digest with the given algorithm ('sha256', 'sha512'), None if unknown."""
    try:
        return f"{algorithm}:" + hashlib.new(algorithm, content).hexdigest()
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None

    @classmethod
    def from_json(cls, obj: dict) -> "Descriptor":
        return cls(media_type=obj.get("mediaType", ""), digest=obj["digest"], size=int(obj.get("size", 0)),
                   platform=obj.get("platform"))


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    content: bytes

    @classmethod
    def from_bytes(cls, content: bytes, media_type: str | None = None) -> "Manifest":
        """A manifest from its exact bytes. The media type is the given one (a
        Content-Type header), else the JSON's mediaType, else guessed from the
        shape: a list of manifests is an OCI index, layers an OCI manifest."""
        media_type = (media_type or "").split(";")[0].strip().lower()
        if media_type in _GENERIC_TYPES:
            media_type = ""
        if not media_type:
            obj = _parse(content)
            media_type = obj.get("mediaType") or ""
            if not media_type:
                if "manifests" in obj:
                    media_type = OCI_INDEX
                elif "layers" in obj or "config" in obj:
                    media_type = OCI_MANIFEST
        return cls(media_type=media_type, digest=sha256_digest(content), content=content)

    @cached_property
    def json(self) -> dict:
        return _parse(self.content)

    def is_index(self) -> bool:
        if self.media_type in INDEX_MEDIA_TYPES:
            return True
        return self.media_type not in MANIFEST_MEDIA_TYPES and "manifests" in self.json

    def child_manifests(self) -> list[Descriptor]:
        """For an index or manifest list: the manifests it lists, in order."""
        if not self.is_index():
            return []
        return [Descriptor.from_json(d) for d in self.json.get("manifests") or []]

    def blobs(self) -> list[Descriptor]:
        """For an image manifest: its config and layers. Layers with "urls"
        (foreign / non-distributable) live elsewhere and are not copied."""
        if self.is_index():
            return []
        obj = self.json
        found = []
        if isinstance(obj.get("config"), dict) and obj["config"].get("digest"):
            found.append(Descriptor.from_json(obj["config"]))
        for layer in obj.get("layers") or []:
            if not layer.get("urls"):
                found.append(Descriptor.from_json(layer))
        return found


def _parse(content: bytes) -> dict:
    try:
        obj = json.loads(content)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}
