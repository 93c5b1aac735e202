"""Two-way sync for a ReadWrite connected registry.

Images pushed to the connected registry go up to its parent (and from there
to every other connected registry that syncs the repository); the parent's
changes come down. Which way a tag goes is decided against `base`, the digest
each tag had when the two sides last agreed (the last run's ledger):

| parent | child | decision                                                 |
|--------|-------|----------------------------------------------------------|
| p      | p     | in sync                                                  |
| p      | -     | copy down (new at the parent, or deleted at the child)   |
| -      | c     | c == base: deleted at the parent, delete at the child    |
|        |       | (kept if the parent lists no tag at all); otherwise      |
|        |       | pushed at the child: copy up                             |
| p      | c     | c == base: copy down; p == base: copy up (a tag that     |
|        |       | came from the parent is never sent back: no ping-pong);  |
|        |       | neither: a conflict                                      |

A conflict loses nothing: the child's version is kept on both sides under
`<tag>-conflict-<suffix>-<digest prefix>`, then the parent's version takes
the tag on the child. An empty or failed listing of the parent deletes
nothing.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor, as_completed

from connected.registry_client import RegistryClient

from .engine import RepositorySync, SyncObserver, SyncResult, TagCopy, TagResult

TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def conflict_tag(tag: str, suffix: str, digest: str) -> str:
    """The tag that keeps the child's side of a conflict (valid, at most 128 characters)."""
    tail = f"-conflict-{TAG_CHARS.sub('-', suffix.lower())}-{digest.split(':', 1)[-1][:12]}"
    return tag[:128 - len(tail)] + tail


class TwoWaySync:
    def __init__(self, parent: RegistryClient, child: RegistryClient, base: dict[tuple[str, str], str],
                 parallelism: int = 4, observer: SyncObserver | None = None, conflict_suffix: str = "child"):
        self.observer = observer or SyncObserver()
        self.down = RepositorySync(parent, child, parallelism, self.observer, delete_policy="none")
        self.up = RepositorySync(child, parent, parallelism, self.observer, delete_policy="none")
        self.base = base
        self.parallelism = max(1, parallelism)
        self.conflict_suffix = conflict_suffix

    def sync(self, repositories: list[str], only_tags: dict[str, set[str]] | None = None) -> SyncResult:
        """Sync the repositories both ways; only_tags limits some of them to
        the tags named (see RepositorySync.sync)."""
        result = SyncResult()
        only_tags = only_tags or {}
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="sync2") as pool:
            listings = list(pool.map(lambda repo: self.down.list_both(repo, result), repositories))
            pairs = []
            for repo, (parent_tags, child_tags) in zip(repositories, listings):
                if child_tags is None:
                    continue  # the child could not be listed: nothing to decide for this repository
                # An empty or failed listing of the parent never deletes anything.
                may_delete = bool(parent_tags)
                pairs += [(repo, tag, may_delete) for tag in sorted(set(parent_tags) | set(child_tags))
                          if repo not in only_tags or tag in only_tags[repo]]
            decided = list(pool.map(lambda item: self.down.guard(item[:2], lambda r, t: self._decide(r, t, item[2])),
                                    pairs))
            work = [d for d in decided if d is not None and not isinstance(d, TagResult)]
            done = [d for d in decided if isinstance(d, TagResult)]
            planned = list(pool.map(self._plan, work))
            self.observer.planned(len(done) + len(work), self._bytes([w for w in planned if w is not None]))
            for tag_result in done:
                self._finish(result, tag_result)
            for future in as_completed([pool.submit(self._carry_out, w) for w in planned if w is not None]):
                self._finish(result, future.result())
        result.stopped = self.observer.stop_reason()
        result.bytes_moved = self.down._moved + self.up._moved
        result.tags.sort(key=lambda t: (t.repository, t.tag))
        return result

    # --- deciding ---------------------------------------------------------------

    def _decide(self, repo: str, tag: str, may_delete: bool):
        """A TagResult when nothing moves, else (kind, repo, tag, parent digest, child digest)."""
        p = self.down.source.head_manifest(repo, tag)
        c = self.down.dest.head_manifest(repo, tag)
        base = self.base.get((repo, tag))
        if p == c:
            return TagResult(repo, tag, "in_sync", digest=p or "")
        if p and not c:
            return ("down", repo, tag, p, c)
        if c and not p:
            if base == c and may_delete:
                return ("delete", repo, tag, p, c)
            if base == c:
                # Gone with the parent's whole repository: neither deleted here
                # nor pushed back up; kept until the parent lists tags again.
                return TagResult(repo, tag, "kept", digest=c, reason="the parent lists no tags: nothing is deleted")
            return ("up", repo, tag, p, c)
        if c == base:
            return ("down", repo, tag, p, c)
        if p == base:
            return ("up", repo, tag, p, c)
        return ("conflict", repo, tag, p, c)

    def _plan(self, decision):
        kind, repo, tag, p, c = decision

        def plan():
            if kind == "down":
                return (kind, self.down.plan(TagCopy(repo, tag, p)))
            if kind == "up":
                return (kind, self.up.plan(TagCopy(repo, tag, c)))
            if kind == "conflict":
                keep = conflict_tag(tag, self.conflict_suffix, c)
                return (kind, self.up.plan(TagCopy(repo, keep, c)), self.down.plan(TagCopy(repo, tag, p)))
            return (kind, repo, tag, c)

        planned = self.down.guard((repo, tag), lambda r, t: plan())
        return planned if not isinstance(planned, TagResult) else ("failed", planned)

    def _bytes(self, planned: list) -> int:
        """Bytes the planned work will transfer, each missing blob once per
        direction however many tags share it (as the copies send them)."""
        downs, ups = [], []
        for work in planned:
            if work[0] == "down":
                downs.append(work[1])
            elif work[0] == "up":
                ups.append(work[1])
            elif work[0] == "conflict":
                ups.append(work[1])
                downs.append(work[2])
        return self.down.bytes_missing(downs) + self.up.bytes_missing(ups)

    # --- doing --------------------------------------------------------------------

    def _carry_out(self, planned) -> TagResult | None:
        kind = planned[0]
        if kind == "failed":
            return planned[1]
        if kind == "down":
            copy = planned[1]
            return self.down.guard((copy.repo, copy.tag), lambda r, t: self.down.copy(copy))
        if kind == "up":
            copy = planned[1]
            return self.up.guard((copy.repo, copy.tag), lambda r, t: self._pushed(self.up.copy(copy)))
        if kind == "conflict":
            return self._resolve(planned[1], planned[2])
        _, repo, tag, child_digest = planned
        return self.down.guard((repo, tag), lambda r, t: self.down.delete(r, t))

    @staticmethod
    def _pushed(result: TagResult) -> TagResult:
        if result.outcome == "copied":
            result.outcome, result.reason = "pushed", "pushed at the connected registry: copied to the parent"
        return result

    def _resolve(self, keep: TagCopy, parents: TagCopy) -> TagResult | None:
        """Keep the child's version on both sides under keep.tag, then give the
        tag the parent's version on the child."""
        def resolve(repo, tag):
            kept = self.up.copy(keep)  # the child's version reaches the parent under the conflict tag
            if kept.outcome != "copied":
                return TagResult(repo, tag, "failed", reason=f"keeping the connected registry's version failed: "
                                                             f"{kept.reason}")
            child = self.down.dest
            child.put_manifest(repo, keep.tag, child.get_manifest(repo, keep.digest))
            down = self.down.copy(parents)
            if down.outcome != "copied":
                return down
            moved = kept.bytes_moved + down.bytes_moved
            return TagResult(repo, tag, "conflict", digest=parents.digest, bytes_moved=moved, reason=f"changed on both sides since the last sync: the tag keeps the parent's "
                                    f"{parents.digest}; the connected registry's {keep.digest} is kept as "
                                    f"'{keep.tag}' on both sides")
        return self.down.guard((parents.repo, parents.tag), resolve)

    def _finish(self, result: SyncResult, tag_result: TagResult | None) -> None:
        if tag_result is not None:
            result.tags.append(tag_result)
            self.observer.tag_finished(tag_result)
