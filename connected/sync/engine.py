"""Copy the tags of selected repositories from a parent registry to a child.

Knows registries (through connected.registry_client) and nothing of Django:
the runner feeds it clients and a list of repositories and listens through a
SyncObserver. Guarantees:

- the child ends with every tag of each repository at exactly the parent's
  digest (manifests are copied as bytes, never re-serialised);
- a tag is written only after everything it references (child manifests of an
  index, config and layers) is present on the child;
- a blob already on the child is not sent again, and a blob shared by several
  images is transferred once per run (others mount it or wait for it);
- one broken tag does not stop the others.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from connected.registry_client import Descriptor, Manifest, NotFound, RegistryClient, RegistryError, copy_blob

log = logging.getLogger(__name__)


class SyncStopped(Exception):
    """Raised inside the engine when the observer asks it to stop."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class TagResult:
    repository: str
    tag: str
    outcome: str  # "copied", "in_sync" or "failed"
    digest: str = ""
    bytes_moved: int = 0
    reason: str = ""


@dataclass
class SyncResult:
    tags: list[TagResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # per repository: listing the parent failed
    bytes_moved: int = 0
    stopped: str | None = None  # the observer's reason, when it stopped the run

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tags if t.outcome == outcome)


class SyncObserver:
    """What the engine tells its caller, and asks it. Called from several
    threads at once: implementations must be thread-safe and quick."""

    def planned(self, tags: int) -> None:
        """The number of tags this run will look at."""

    def tag_finished(self, result: TagResult) -> None:
        """One tag is done (copied, already in sync, or failed)."""

    def moved(self, nbytes: int) -> None:
        """nbytes more were transferred."""

    def stop_reason(self) -> str | None:
        """A reason to stop now ("cancelled", "window closed"), or None."""
        return None


class RepositorySync:
    """One run's copy of repositories from source to dest."""

    def __init__(self, source: RegistryClient, dest: RegistryClient, parallelism: int = 4,
                 observer: SyncObserver | None = None):
        self.source = source
        self.dest = dest
        self.parallelism = max(1, parallelism)
        self.observer = observer or SyncObserver()
        self._lock = threading.Lock()
        # digest -> Future resolving to a repository of dest that holds it
        self._blobs: dict[str, Future] = {}
        self._present: set[tuple[str, str]] = set()
        self._moved = 0
        self._local = threading.local()  # bytes moved by the current thread

    # --- the run ------------------------------------------------------------

    def sync(self, repositories: list[str]) -> SyncResult:
        result = SyncResult()
        work: list[tuple[str, str]] = []
        for repo in repositories:
            try:
                tags = self.source.list_tags(repo)
            except NotFound:
                log.info("repository %s does not exist at the parent: nothing to copy", repo)
                continue
            except RegistryError as e:
                result.errors.append(f"{repo}: listing the parent's tags failed: {e}")
                continue
            work.extend((repo, tag) for tag in sorted(tags))
        self.observer.planned(len(work))

        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="sync") as pool:
            futures = [pool.submit(self._sync_tag_safely, repo, tag) for repo, tag in work]
            try:
                for future in as_completed(futures):
                    tag_result = future.result()
                    if tag_result is not None:
                        result.tags.append(tag_result)
                        self.observer.tag_finished(tag_result)
            finally:
                for future in futures:
                    future.cancel()
        result.stopped = self.observer.stop_reason()
        result.bytes_moved = self._moved
        result.tags.sort(key=lambda t: (t.repository, t.tag))
        return result

    def _sync_tag_safely(self, repo: str, tag: str) -> TagResult | None:
        """sync_tag, with failures turned into a failed TagResult; None when
        the run was stopped before or while this tag was handled."""
        if self.observer.stop_reason():
            return None
        try:
            return self.sync_tag(repo, tag)
        except SyncStopped:
            return None
        except RegistryError as e:
            return TagResult(repo, tag, "failed", reason=str(e))
        except Exception as e:  # a bug must not take the other tags down
            log.exception("unexpected error copying %s:%s", repo, tag)
            return TagResult(repo, tag, "failed", reason=f"{type(e).__name__}: {e}")

    # --- one tag ------------------------------------------------------------

    def sync_tag(self, repo: str, tag: str) -> TagResult:
        """Make dest's repo:tag point at the same digest as the source's."""
        digest = self.source.head_manifest(repo, tag)
        if digest is None:
            return TagResult(repo, tag, "failed", reason="the tag disappeared from the parent during the sync")
        if self.dest.head_manifest(repo, tag) == digest:
            return TagResult(repo, tag, "in_sync", digest=digest)
        before = self._moved_by_thread()
        manifest = self.source.get_manifest(repo, digest)
        self._ensure_referenced(repo, manifest)
        self._check_stop()
        # Everything the manifest references is on dest: now the tag may point at it.
        self.dest.put_manifest(repo, tag, manifest)
        return TagResult(repo, tag, "copied", digest=digest, bytes_moved=self._moved_by_thread() - before)

    def _ensure_referenced(self, repo: str, manifest: Manifest) -> None:
        """Put on dest everything manifest references: for an index its child
        manifests (each after its own blobs), for an image its blobs."""
        for child in manifest.child_manifests():
            self._check_stop()
            if self.dest.head_manifest(repo, child.digest) == child.digest:
                continue
            child_manifest = self.source.get_manifest(repo, child.digest)
            self._ensure_referenced(repo, child_manifest)
            self.dest.put_manifest(repo, child.digest, child_manifest)
        for blob in manifest.blobs():
            self._check_stop()
            self._ensure_blob(repo, blob)

    # --- blobs --------------------------------------------------------------

    def _ensure_blob(self, repo: str, blob: Descriptor) -> None:
        """Make blob present in dest's repo: skip, mount, wait for another
        thread's transfer, or transfer it."""
        with self._lock:
            if (repo, blob.digest) in self._present:
                return
            pending = self._blobs.get(blob.digest)
            owner = pending is None
            if owner:
                pending = self._blobs[blob.digest] = Future()
        if not owner:
            holder = pending.result()  # re-raises the owner's failure
            if holder != repo and not self.dest.blob_exists(repo, blob.digest):
                if not self.dest.mount_blob(repo, blob.digest, holder):
                    self._transfer(repo, blob)
            self._mark_present(repo, blob.digest)
            return
        try:
            if not self.dest.blob_exists(repo, blob.digest):
                self._transfer(repo, blob)
        except BaseException as e:
            with self._lock:
                del self._blobs[blob.digest]  # let a later tag try again
            pending.set_exception(e)
            raise
        self._mark_present(repo, blob.digest)
        pending.set_result(repo)

    def _transfer(self, repo: str, blob: Descriptor) -> None:
        copy_blob(self.source, repo, self.dest, repo, blob, on_bytes=self._count_bytes)

    def _mark_present(self, repo: str, digest: str) -> None:
        with self._lock:
            self._present.add((repo, digest))

    # --- progress and stopping ---------------------------------------------

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
                      parallelism: int = 4, observer: SyncObserver | None = None) -> SyncResult:
    """Copy every tag of each repository from source to dest; see RepositorySync."""
    return RepositorySync(source, dest, parallelism, observer).sync(repositories)
