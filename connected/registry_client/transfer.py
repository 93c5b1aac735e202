"""Moving blobs between registries without holding them in memory."""
from __future__ import annotations

import logging
import random
import time
from typing import Callable

from .client import RegistryClient
from .errors import AuthError, DigestMismatch, NotFound, RegistryError, Unreachable
from .manifest import Descriptor

log = logging.getLogger(__name__)

# How many times copy_blob tries a whole transfer before giving up.
COPY_ATTEMPTS = 3


def _transient(error: RegistryError) -> bool:
    if error.code == "BLOB_UPLOAD_UNKNOWN":
        return True  # the upload session was lost (registry restarted, purged): start a new one
    if isinstance(error, (DigestMismatch, NotFound, AuthError)):
        return False
    return isinstance(error, Unreachable) or (error.status is not None and (error.status >= 500 or error.status == 429))


def copy_blob(source: RegistryClient, source_repo: str, dest: RegistryClient, dest_repo: str,
              descriptor: Descriptor, on_bytes: Callable[[int], None] | None = None) -> int:
    """Stream one blob from source to dest, checking its digest on the way.
    Returns the bytes moved (the blob's size). A transfer broken by the network
    or a 5xx is started again from the beginning, up to COPY_ATTEMPTS times;
    on_bytes is then only told about bytes beyond those already reported, so
    its total stays the blob's size."""
    reported = 0

    def progress(n: int) -> None:
        nonlocal reported, moved
        moved += n
        if on_bytes is not None and moved > reported:
            on_bytes(moved - reported)
            reported = moved

    for attempt in range(1, COPY_ATTEMPTS + 1):
        moved = 0
        try:
            with source.open_blob(source_repo, descriptor.digest) as blob:
                dest.upload_blob(dest_repo, descriptor.digest, descriptor.size, blob.iter_chunks(),
                                 on_bytes=progress)
            return descriptor.size
        except RegistryError as e:
            if not _transient(e) or attempt == COPY_ATTEMPTS:
                raise
            log.info("copying blob %s to %s failed (%s); trying again", descriptor.digest, dest_repo, e)
            time.sleep(random.uniform(0, min(5.0, 0.5 * 2 ** attempt)))
    raise AssertionError("unreachable")
