"""Poll until something holds: end-to-end tests and benchmarks wait on real
processes (a registry, a worker) this way."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2, error: type[Exception] = AssertionError):
    """predicate()'s first truthy value within timeout seconds; raises error
    naming what otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise error(f"timed out after {timeout:g} s waiting for {what}")
