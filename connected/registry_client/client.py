"""RegistryClient: the OCI distribution protocol over one httpx connection
pool. It knows requests, auth, retries and digests; what to copy is decided
above it (connected.sync)."""
from __future__ import annotations

import email.utils
import functools
import hashlib
import logging
import random
import ssl
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import httpx

from .auth import CATALOG_SCOPE, Authenticator, Scopes, delete_scope, pull_scope, push_scope
from .errors import AuthError, DigestMismatch, RegistryError, Unreachable, describe, error_for_response
from .manifest import MANIFEST_MEDIA_TYPES, Manifest, digest_of, is_digest

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
CHUNK_SIZE = 1 << 20


def normalize_base_url(base_url: str) -> str:
    base_url = base_url.strip().rstrip("/")
    return base_url if "://" in base_url else "https://" + base_url


def hasher_for(digest: str):
    """A hashlib object for the digest's algorithm ('sha256:…')."""
    algorithm, _, hex_part = digest.partition(":")
    try:
        if not hex_part:
            raise ValueError
        return hashlib.new(algorithm)
    except ValueError:
        raise RegistryError(f"'{digest}' is not a digest this client can check") from None


class BlobStream:
    """A blob being read. iter_chunks hashes as it goes and raises
    DigestMismatch at the end if the bytes are not the blob asked for."""

    def __init__(self, response: httpx.Response, digest: str):
        self._response = response
        self.digest = digest
        length = response.headers.get("Content-Length")
        self.size: int = int(length) if length and length.isdigit() else -1

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        hasher = hasher_for(self.digest)
        try:
            for chunk in self._response.iter_bytes(chunk_size):
                hasher.update(chunk)
                yield chunk
        except httpx.TransportError as e:
            raise Unreachable(f"{describe(self._response.request)}: reading the blob failed: "
                              f"{type(e).__name__}: {e}") from e
        got = f"{hasher.name}:{hasher.hexdigest()}"
        if got != self.digest:
            raise DigestMismatch(f"blob {self.digest} read as {got}")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client of the process: building
    one loads the CA bundle (about 50 ms), which a client per run, per probe
    and per token request would otherwise pay each time."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class RegistryClient:
    """One registry (base_url like http://127.0.0.1:5000). Thread-safe: one
    client may serve many threads at once. An open_blob or upload holds one
    of max_connections until it ends, so a client that is both source and
    destination of concurrent copy_blob calls needs two per thread."""

    # Backoff between retries: base * 2**attempt, at most cap, with full jitter.
    backoff_base = 0.2
    backoff_cap = 5.0
    retry_after_cap = 60.0

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0, max_connections: int = 16, retries: int = 4):
        self.base_url = normalize_base_url(base_url)
        self.retries = retries
        # Each limit applies to one step (connect, one read, one write, waiting
        # for a pooled connection): an idle peer fails, a long transfer doesn't.
        self._http = httpx.Client(
            timeout=httpx.Timeout(connect=timeout, read=timeout, write=timeout, pool=timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            verify=tls_context(),
        )
        self._auth = Authenticator(self._send_plain, username, password)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    # --- the protocol -------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers /v2/ and accepts our credentials."""
        self._request("GET", "/v2/", ()).close()

    def catalog(self, page_size: int = 1000) -> list[str]:
        return self._paged("/v2/_catalog", CATALOG_SCOPE, page_size, "repositories")

    def list_tags(self, repo: str, page_size: int = 1000) -> list[str]:
        return self._paged(f"/v2/{repo}/tags/list", pull_scope(repo), page_size, "tags")

    def head_manifest(self, repo: str, ref: str) -> str | None:
        """The digest ref points at, None if there is no such manifest."""
        response = self._request("HEAD", f"/v2/{repo}/manifests/{ref}", pull_scope(repo),
                                 headers={"Accept": MANIFEST_ACCEPT}, allow=(404,))
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        return digest or self.get_manifest(repo, ref).digest

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        response = self._request("GET", f"/v2/{repo}/manifests/{ref}", pull_scope(repo),
                                 headers={"Accept": MANIFEST_ACCEPT})
        manifest = Manifest.from_bytes(response.content, response.headers.get("Content-Type"))
        expected = ref if is_digest(ref) else response.headers.get("Docker-Content-Digest")
        if expected:
            got = digest_of(response.content, expected.partition(":")[0])
            if got is None and is_digest(ref):
                raise RegistryError(f"'{ref}' is not a digest this client can check")
            if got is not None and got != expected:
                raise DigestMismatch(f"manifest {repo}@{expected} read as {got}")
            if is_digest(ref):
                manifest = replace(manifest, digest=ref)
        return manifest

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> str:
        """Store manifest under ref (a tag or its digest); returns its digest."""
        response = self._request("PUT", f"/v2/{repo}/manifests/{ref}", push_scope(repo),
                                 headers={"Content-Type": manifest.media_type}, content=manifest.content)
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored.partition(":")[0] == manifest.digest.partition(":")[0] and stored != manifest.digest:
            raise DigestMismatch(f"registry stored manifest {manifest.digest} as {stored}")
        return manifest.digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete by digest: removes the manifest and every tag on it."""
        if not is_digest(digest):
            raise ValueError(f"manifests are deleted by digest, not by tag ('{digest}')")
        self._request("DELETE", f"/v2/{repo}/manifests/{digest}", delete_scope(repo)).close()

    def blob_exists(self, repo: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", pull_scope(repo),
                                 allow=(404,), follow_redirects=True)
        return response.status_code != 404

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Ask the registry to link a blob from from_repo into repo. True if it
        did; False if it started an ordinary upload instead (the blob is not
        readable there), which is abandoned."""
        scopes = push_scope(repo) + pull_scope(from_repo)
        try:
            response = self._request("POST", f"/v2/{repo}/blobs/uploads/", scopes,
                                     params={"mount": digest, "from": from_repo})
        except AuthError as e:
            # Token auth refuses the whole request when from_repo may not be
            # pulled: then there is nothing to mount, an upload may still work.
            log.debug("mount of %s from %s refused: %s", digest, from_repo, e)
            return False
        if response.status_code == 201:
            return True
        self._cancel_upload(response, scopes)
        return False

    def upload_blob(self, repo: str, digest: str, size: int, chunks: Iterable[bytes],
                    on_bytes: Callable[[int], None] | None = None) -> None:
        """Upload a blob in one streamed PUT. The bytes are hashed on the way;
        if they are not size bytes hashing to digest, the request is broken off
        before its last byte, so the registry never stores them."""
        scopes = push_scope(repo)
        # The POST is replayable, so it is where auth is settled (a fresh push
        # token is cached); the streamed PUT cannot be sent twice.
        start = self._request("POST", f"/v2/{repo}/blobs/uploads/", scopes)
        location = self._location(start)
        put_url = location.copy_merge_params({"digest": digest})
        log.debug("uploading %s (%d bytes) to %s", digest, size, location)
        if size == 0:
            # Nothing to stream; check the (empty) content up front.
            body = b"".join(_verified_body(chunks, digest, size, on_bytes))
        else:
            body = _verified_body(chunks, digest, size, on_bytes)
        try:
            response = self._request("PUT", put_url, scopes, content=body, retry=False, auth_retry=False,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Length": str(size)})
        except BaseException:
            self._cancel_upload(start, scopes)
            raise
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            raise DigestMismatch(f"registry stored blob {digest} as {stored}")

    @contextmanager
    def open_blob(self, repo: str, digest: str) -> Iterator[BlobStream]:
        """Stream a blob: with client.open_blob(r, d) as blob: for chunk in blob.iter_chunks(): …"""
        response = self._request("GET", f"/v2/{repo}/blobs/{digest}", pull_scope(repo),
                                 stream=True, follow_redirects=True)
        try:
            yield BlobStream(response, digest)
        finally:
            response.close()

    # --- helpers ---------------------------------------------------------------

    def _paged(self, path: str, scopes: Scopes, page_size: int, key: str) -> list[str]:
        items: list[str] = []
        url: str | httpx.URL = path
        params: dict | None = {"n": page_size}
        seen = set()
        while url is not None:
            response = self._request("GET", url, scopes, params=params)
            items.extend(response.json().get(key) or [])
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                break
            url = self._absolute(next_link)
            params = None
            if str(url) in seen:  # a registry that loops would keep us here forever
                raise RegistryError(f"{describe(response.request)}: paging loops back to a page already read")
            seen.add(str(url))
        return items

    def _absolute(self, url: str) -> httpx.URL:
        return httpx.URL(self.base_url + "/").join(url)

    def _location(self, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location")
        if response.status_code != 202 or not location:
            raise RegistryError(f"{describe(response.request)}: expected 202 with a Location, "
                                f"got {response.status_code}", response.status_code)
        return self._absolute(location)

    def _cancel_upload(self, start: httpx.Response, scopes: Scopes) -> None:
        """Best effort: end an upload session we will not finish. Under token
        auth, cancelling needs the 'delete' action, which a sync token rarely
        has; the session is then left for the registry's upload purging."""
        location = start.headers.get("Location")
        if not location or self._auth.scheme == "bearer":
            return
        try:
            self._request("DELETE", self._absolute(location), scopes, retry=False, auth_retry=False,
                          allow=(404,)).close()
        except RegistryError as e:
            log.debug("could not cancel upload session: %s", e)

    def _url(self, path_or_url: str | httpx.URL) -> httpx.URL:
        if isinstance(path_or_url, httpx.URL):
            return path_or_url
        return httpx.URL(self.base_url + path_or_url)

    def _request(self, method: str, path_or_url: str | httpx.URL, scopes: Scopes, *,
                 headers: dict | None = None, params: dict | None = None, content=None,
                 stream: bool = False, follow_redirects: bool = False, retry: bool = True,
                 auth_retry: bool = True, allow: tuple[int, ...] = ()) -> httpx.Response:
        """Send with auth and retries; returns a response with status < 400 or
        in allow (read unless stream), else raises the fitting RegistryError."""
        url = self._url(path_or_url)
        auth_retried = False
        attempt = 0
        while True:
            auth_headers, sent_token = self._auth.authorize(scopes)
            request = self._http.build_request(method, url, params=params, content=content,
                                               headers={**(headers or {}), **auth_headers})
            try:
                response = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as e:
                if retry and attempt < self.retries:
                    log.debug("%s: %s, retrying", describe(request), type(e).__name__)
                    self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise Unreachable(f"{describe(request)}: {type(e).__name__}: {e}") from e
            log.debug("%s -> %d", describe(request), response.status_code)
            status = response.status_code
            if status < 400 or status in allow:
                return response
            if stream:
                response.read()
            response.close()
            if status == 401 and auth_retry and not auth_retried:
                auth_retried = True
                if self._auth.on_challenge(response, scopes, sent_token, bool(auth_headers)):
                    continue
            if retry and attempt < self.retries and (status >= 500 or status == 429):
                delay = self._retry_after(response) if status == 429 else None
                self._sleep(delay if delay is not None else self._backoff(attempt))
                attempt += 1
                continue
            raise error_for_response(response, authenticated=bool(auth_headers) or self._auth.has_credentials)

    def _send_plain(self, request: httpx.Request) -> httpx.Response:
        """Send a request that needs no registry auth (the token service), with retries."""
        for attempt in range(self.retries + 1):
            try:
                response = self._http.send(request)
            except httpx.TransportError as e:
                if attempt < self.retries:
                    self._sleep(self._backoff(attempt))
                    continue
                raise Unreachable(f"{describe(request)}: {type(e).__name__}: {e}") from e
            if response.status_code >= 500 and attempt < self.retries:
                self._sleep(self._backoff(attempt))
                continue
            return response
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * (2 ** attempt)))

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = (response.headers.get("Retry-After") or "").strip()
        if not value:
            return None
        if value.isdigit():
            return min(float(value), self.retry_after_cap)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, min(when.timestamp() - time.time(), self.retry_after_cap))

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds)


def _verified_body(chunks: Iterable[bytes], digest: str, size: int,
                   on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
    """Yield chunks, but check size and digest before the last byte goes out:
    a request cut short is never committed by the registry."""
    hasher = hasher_for(digest)

    def check() -> None:
        got = f"{hasher.name}:{hasher.hexdigest()}"
        if got != digest:
            raise DigestMismatch(f"blob {digest}: the bytes hash to {got}")

    sent = 0
    if size == 0:
        check()
    for chunk in chunks:
        if not chunk:
            continue
        sent += len(chunk)
        if sent > size:
            raise DigestMismatch(f"blob {digest}: more than the {size} bytes announced")
        hasher.update(chunk)
        if sent == size:
            check()
        yield chunk
        if on_bytes is not None:
            on_bytes(len(chunk))
    if sent < size:
        raise DigestMismatch(f"blob {digest}: only {sent} of the {size} bytes announced")


def ping(base_url: str, timeout: float = 5.0) -> None:
    """Raise RegistryError unless base_url answers /v2/ as a registry (200 or
    401, anonymously: credentials are not checked here)."""
    url = normalize_base_url(base_url) + "/v2/"
    try:
        response = httpx.get(url, timeout=timeout, verify=tls_context())
    except httpx.HTTPError as e:
        raise Unreachable(f"{base_url} is unreachable: {e}") from e
    if response.status_code not in (200, 401):
        raise RegistryError(f"{base_url} does not answer as an OCI registry (GET /v2/ gave {response.status_code})",
                            response.status_code)
