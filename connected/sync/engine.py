"""Copy the tags of selected repositories from a parent registry to a child.

Knows registries (through connected.registry_client) and nothing of Django:
the runner feeds it clients and repositories and listens through a
SyncObserver. A run has four steps:

1. compare: list each repository's tags on both sides and compare digests;
2. plan: read the manifests of the tags that differ and find the blobs the
   child lacks, so progress can be told as bytes done of bytes planned;
3. copy: blobs (in parallel, each once per run), then child manifests, then
   the tag itself, then a check that all of it is on the child;
4. delete: tags gone from the parent (never on an empty or failed listing).

Guarantees: the child's digests equal the parent's (manifests are copied as
bytes, never re-serialised); a tag is written only after everything it
references is present; a blob already on the child is not sent again; one
broken tag does not stop the others.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from connected.registry_client import Descriptor, Manifest, NotFound, RegistryClient, RegistryError, copy_blob

from .tombstone import delete_tag

log = logging.getLogger(__name__)

# Which child tags a run may delete: "mirror" (ReadOnly: every tag the parent
# lacks), "synced" (ReadWrite: only tags an earlier run brought, so local
# pushes survive) or "none".
DELETE_POLICIES = ("mirror", "synced", "none")


class SyncStopped(Exception):
    """Raised inside the engine when the observer asks it to stop."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class TagResult:
    repository: str
    tag: str
    outcome: str  # "copied", "in_sync", "deleted" or "failed"
    digest: str = ""
    bytes_moved: int = 0
    reason: str = ""


@dataclass
class SyncResult:
    tags: list[TagResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # per repository: a listing failed
    bytes_moved: int = 0
    bytes_planned: int = 0
    stopped: str | None = None  # the observer's reason, when it stopped the run

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tags if t.outcome == outcome)


class SyncObserver:
    """What the engine tells its caller, and asks it. Called from several
    threads at once: implementations must be thread-safe and quick."""

    def planned(self, tags: int, nbytes: int) -> None:
        """The tags this run looks at, and the bytes it expects to transfer."""

    def tag_finished(self, result: TagResult) -> None:
        """One tag is done (copied, in sync, deleted or failed)."""

    def moved(self, nbytes: int) -> None:
        """nbytes more were transferred."""

    def stop_reason(self) -> str | None:
        """A reason to stop now ("cancelled", "window closed"), or None."""
        return None


@dataclass
class TagCopy:
    """A tag whose digest differs on the child, with what it references."""
    repo: str
    tag: str
    digest: str
    manifests: list[Manifest] = field(default_factory=list)  # referenced ones first, the tagged one last
    blobs: list[Descriptor] = field(default_factory=list)


class RepositorySync:
    """One run's sync of repositories from source to dest."""

    def __init__(self, source: RegistryClient, dest: RegistryClient, parallelism: int = 4,
                 observer: SyncObserver | None = None, delete_policy: str = "mirror",
                 previously_synced: Iterable[tuple[str, str]] = (), purge_unlisted: bool = False,
                 known_child_digests: dict[tuple[str, str], str] | None = None):
        if delete_policy not in DELETE_POLICIES:
            raise ValueError(f"delete_policy must be one of {DELETE_POLICIES}")
        self.source, self.dest = source, dest
        self.parallelism = max(1, parallelism)
        self.observer = observer or SyncObserver()
        self.delete_policy = delete_policy
        self.previously_synced = set(previously_synced)
        self.purge_unlisted = purge_unlisted
        # (repo, tag) -> digest an earlier run left on the child. A tag the
        # child still lists at that digest costs one request (the parent's
        # HEAD) instead of two; without it both sides are asked.
        self.known_child_digests = known_child_digests or {}
        self._lock = threading.Lock()
        self._blobs: dict[str, Future] = {}  # digest -> Future of a dest repository holding it
        self._present: set[tuple[str, str]] = set()  # (repo, digest) known on dest
        self._missing: set[tuple[str, str]] = set()  # (repo, digest) known absent on dest
        self._moved = 0
        self._local = threading.local()  # bytes moved by the current thread

    # --- the run --------------------------------------------------------------

    def sync(self, repositories: list[str], only_tags: dict[str, set[str]] | None = None) -> SyncResult:
        """Sync the repositories. only_tags limits some of them to the tags
        named (a sync message's changes): only those are compared, copied or
        deleted there, and nothing is purged."""
        result = SyncResult()
        only_tags = only_tags or {}

        def wanted(repo: str, tags) -> list[str]:
            return [t for t in tags if repo not in only_tags or t in only_tags[repo]]

        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="sync") as pool:
            self._pool = pool
            listings = self._map(lambda repo: self.list_both(repo, result), repositories)
            child_tags = {repo: set(listed or ()) for repo, (_, listed) in zip(repositories, listings)}
            compared = self._map(lambda rt: self.guard(rt, lambda r, t: self._compare(r, t, child_tags[r])), [
                (repo, tag) for repo, (parent_tags, _) in zip(repositories, listings)
                for tag in wanted(repo, parent_tags)])
            copies = [c for c in compared if isinstance(c, TagCopy)]
            done = [c for c in compared if isinstance(c, TagResult)]
            deletes = [(repo, tag) for repo, (parent_tags, child_tags) in zip(repositories, listings)
                       for tag in wanted(repo, self._deletable(repo, parent_tags, child_tags))]
            planned = self._map(lambda c: self.guard((c.repo, c.tag), lambda r, t: self.plan(c)), copies)
            copies = [c for c in planned if isinstance(c, TagCopy)]
            done += [p for p in planned if isinstance(p, TagResult)]
            result.bytes_planned = self.bytes_missing(copies)
            self.observer.planned(len(done) + len(copies) + len(deletes), result.bytes_planned)
            for tag_result in done:
                self._finish(result, tag_result)
            for tag_result in self._as_done(lambda c: self.guard((c.repo, c.tag), lambda r, t: self.copy(c)),
                                            copies):
                self._finish(result, tag_result)
            for tag_result in self._as_done(lambda rt: self.guard(rt, self.delete), deletes):
                self._finish(result, tag_result)
            if self.purge_unlisted and not only_tags and not self.observer.stop_reason():
                self._purge_unlisted(repositories, result)
        result.stopped = self.observer.stop_reason()
        result.bytes_moved = self._moved
        result.tags.sort(key=lambda t: (t.repository, t.tag))
        return result

    def _map(self, func: Callable, items: list) -> list:
        """func over items in parallel; the results in the items' order."""
        return list(self._pool.map(func, items))

    def _as_done(self, func: Callable, items: list) -> Iterator:
        """func over items in parallel; each result as soon as it is ready."""
        for future in as_completed([self._pool.submit(func, item) for item in items]):
            yield future.result()

    def _finish(self, result: SyncResult, tag_result: TagResult | None) -> None:
        if tag_result is not None:
            result.tags.append(tag_result)
            self.observer.tag_finished(tag_result)

    def guard(self, repo_tag: tuple[str, str], step: Callable) -> object:
        """step(repo, tag) with failures turned into a failed TagResult; None
        when the run was stopped before or during it."""
        repo, tag = repo_tag
        if self.observer.stop_reason():
            return None
        try:
            return step(repo, tag)
        except SyncStopped:
            return None
        except RegistryError as e:
            return TagResult(repo, tag, "failed", reason=str(e))
        except Exception as e:  # a bug must not take the other tags down
            log.exception("unexpected error syncing %s:%s", repo, tag)
            return TagResult(repo, tag, "failed", reason=f"{type(e).__name__}: {e}")

    # --- 1. compare -------------------------------------------------------------

    def list_both(self, repo: str, result: SyncResult) -> tuple[list[str], list[str] | None]:
        """(parent tags, child tags). A failed parent listing is an error and
        yields no tags; a failed child listing yields None (nothing deleted)."""
        try:
            parent_tags = sorted(self.source.list_tags(repo))
        except NotFound:
            parent_tags = []
        except RegistryError as e:
            with self._lock:
                result.errors.append(f"{repo}: listing the parent's tags failed: {e}")
            return [], None
        try:
            child_tags = self.dest.list_tags(repo)
        except NotFound:
            child_tags = []
        except RegistryError as e:
            log.warning("%s: listing the child's tags failed: %s", repo, e)
            child_tags = None
        return parent_tags, child_tags

    def _compare(self, repo: str, tag: str, child_tags: set[str]) -> TagResult | TagCopy:
        digest = self.source.head_manifest(repo, tag)
        if digest is None:
            return TagResult(repo, tag, "failed", reason="the tag disappeared from the parent during the sync")
        if tag not in child_tags:
            return TagCopy(repo, tag, digest)
        child_digest = self.known_child_digests.get((repo, tag)) or self.dest.head_manifest(repo, tag)
        if child_digest == digest:
            return TagResult(repo, tag, "in_sync", digest=digest)
        return TagCopy(repo, tag, digest)

    def _deletable(self, repo: str, parent_tags: list[str], child_tags: list[str] | None) -> list[str]:
        # An empty or failed listing of the parent never deletes anything.
        if self.delete_policy == "none" or not parent_tags or not child_tags:
            return []
        gone = sorted(set(child_tags) - set(parent_tags))
        if self.delete_policy == "synced":
            gone = [t for t in gone if (repo, t) in self.previously_synced]
        return gone

    # --- 2. plan ----------------------------------------------------------------

    def plan(self, copy: TagCopy) -> TagCopy:
        """Read the manifests copy references (an index's children first) and
        note which of its blobs the child lacks."""
        def walk(manifest: Manifest) -> None:
            for child in manifest.child_manifests():
                self._check_stop()
                walk(self.source.get_manifest(copy.repo, child.digest))
            copy.blobs.extend(manifest.blobs())
            copy.manifests.append(manifest)

        walk(self.source.get_manifest(copy.repo, copy.digest))
        for blob in copy.blobs:
            key = (copy.repo, blob.digest)
            with self._lock:
                known = key in self._present or key in self._missing
            if not known:
                present = self.dest.blob_exists(copy.repo, blob.digest)
                with self._lock:
                    (self._present if present else self._missing).add(key)
        return copy

    def bytes_missing(self, copies: list[TagCopy]) -> int:
        """Bytes the copies will transfer: each missing blob once, however
        many repositories and tags share it."""
        sizes = {b.digest: b.size for c in copies for b in c.blobs if (c.repo, b.digest) in self._missing}
        return sum(sizes.values())

    # --- 3. copy ----------------------------------------------------------------

    def copy(self, copy: TagCopy) -> TagResult:
        before = self._moved_by_thread()
        for blob in copy.blobs:
            self._check_stop()
            self._ensure_blob(copy.repo, blob)
        for manifest in copy.manifests[:-1]:
            self._check_stop()
            if self.dest.head_manifest(copy.repo, manifest.digest) != manifest.digest:
                self.dest.put_manifest(copy.repo, manifest.digest, manifest)
        self._check_stop()
        # Everything the tag references is on the child: now it may point at it.
        self.dest.put_manifest(copy.repo, copy.tag, copy.manifests[-1])
        problem = self._verify(copy)
        moved = self._moved_by_thread() - before
        if problem:
            return TagResult(copy.repo, copy.tag, "failed", copy.digest, moved, f"verification failed: {problem}")
        return TagResult(copy.repo, copy.tag, "copied", copy.digest, moved)

    def _verify(self, copy: TagCopy) -> str | None:
        """Check on the child that the tag, its manifests and blobs are all there."""
        if self.dest.head_manifest(copy.repo, copy.tag) != copy.digest:
            return f"the child's tag does not point at {copy.digest}"
        for manifest in copy.manifests[:-1]:
            if self.dest.head_manifest(copy.repo, manifest.digest) != manifest.digest:
                return f"manifest {manifest.digest} is missing on the child"
        for blob in {b.digest: b for b in copy.blobs}.values():
            if not self.dest.blob_exists(copy.repo, blob.digest):
                return f"blob {blob.digest} is missing on the child"
        return None

    def _ensure_blob(self, repo: str, blob: Descriptor) -> None:
        """Make blob present in dest's repo: skip it, mount it from a repository
        this run already put it in, wait for another thread's transfer of it,
        or transfer it."""
        key = (repo, blob.digest)
        with self._lock:
            if key in self._present:
                return
            pending = self._blobs.get(blob.digest)
            owner = pending is None
            if owner:
                pending = self._blobs[blob.digest] = Future()
        if not owner:
            holder = pending.result()  # re-raises the owner's failure
            if holder != repo and not self.dest.mount_blob(repo, blob.digest, holder):
                self._transfer(repo, blob)
            self._mark_present(key)
            return
        try:
            holder = self._holder_on_dest(blob.digest)
            if holder is None or not self.dest.mount_blob(repo, blob.digest, holder):
                self._transfer(repo, blob)
        except BaseException as e:
            with self._lock:
                del self._blobs[blob.digest]  # a later tag may try again
            pending.set_exception(e)
            raise
        self._mark_present(key)
        pending.set_result(repo)

    def _holder_on_dest(self, digest: str) -> str | None:
        """A repository of dest known to hold digest (mounting is free)."""
        with self._lock:
            return next((r for r, d in self._present if d == digest), None)

    def _transfer(self, repo: str, blob: Descriptor) -> None:
        copy_blob(self.source, repo, self.dest, repo, blob, on_bytes=self._count_bytes)

    def _mark_present(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._present.add(key)
            self._missing.discard(key)

    # --- 4. delete --------------------------------------------------------------

    def delete(self, repo: str, tag: str) -> TagResult:
        digest = self.dest.head_manifest(repo, tag) or ""
        if digest:
            delete_tag(self.dest, repo, tag)
        return TagResult(repo, tag, "deleted", digest=digest, reason="deleted at the parent")

    def _purge_unlisted(self, repositories: list[str], result: SyncResult) -> None:
        """Remove from the child every repository no longer in the sync list
        (ReadOnly: the child holds nothing else)."""
        try:
            unlisted = sorted(set(self.dest.catalog()) - set(repositories))
        except RegistryError as e:
            result.errors.append(f"listing the child's repositories failed: {e}")
            return
        for repo in unlisted:
            try:
                tags = self.dest.list_tags(repo)
            except NotFound:
                continue
            except RegistryError as e:
                result.errors.append(f"{repo}: listing the child's tags for the purge failed: {e}")
                continue
            digests: dict[str, list[str]] = {}
            for tag in tags:
                digest = self.dest.head_manifest(repo, tag)
                if digest:
                    digests.setdefault(digest, []).append(tag)
            for digest, on_digest in digests.items():
                try:
                    self.dest.delete_manifest(repo, digest)  # the whole repository goes: all its tags
                    outcome, reason = "deleted", "repository removed from the sync list"
                except RegistryError as e:
                    outcome, reason = "failed", f"purging the repository failed: {e}"
                for tag in on_digest:
                    self._finish(result, TagResult(repo, tag, outcome, digest, reason=reason))

    # --- progress and stopping -------------------------------------------------

    def _count_bytes(self, n: int) -> None:
        with self._lock:
            self._moved += n
        self._local.moved = getattr(self._local, "moved", 0) + n
        self.observer.moved(n)
        # Checked per chunk: a cancel or a closing window stops even a large blob.
        self._check_stop()

    def _moved_by_thread(self) -> int:
        return getattr(self._local, "moved", 0)

    def _check_stop(self) -> None:
        reason = self.observer.stop_reason()
        if reason:
            raise SyncStopped(reason)


def sync_repositories(source: RegistryClient, dest: RegistryClient, repositories: list[str],
                      parallelism: int = 4, observer: SyncObserver | None = None, **options) -> SyncResult:
    """Sync every tag of each repository from source to dest; see RepositorySync
    for the options (delete_policy, previously_synced, purge_unlisted,
    known_child_digests)."""
    return RepositorySync(source, dest, parallelism, observer, **options).sync(repositories)
