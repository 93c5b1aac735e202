"""Sync schedules and windows, as pure functions of a cron expression, a
window length and a UTC instant (the clock is always passed in).

Each cron occurrence opens a window of `window` length; windows that overlap
merge into one (windows that merely touch stay separate, so "0 * * * *" with
PT1H opens every hour).
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator

from croniter import croniter

UTC = dt.timezone.utc


def _aware(now: dt.datetime) -> dt.datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def occurrences_after(cron: str, start: dt.datetime) -> Iterator[dt.datetime]:
    """Cron occurrences strictly after start, in UTC, in order."""
    it = croniter(cron, _aware(start))
    while True:
        yield it.get_next(dt.datetime).astimezone(UTC).replace(fold=0)


def occurrences_before(cron: str, start: dt.datetime) -> Iterator[dt.datetime]:
    """Cron occurrences at or before start, in UTC, latest first."""
    it = croniter(cron, _aware(start) + dt.timedelta(microseconds=1))
    while True:
        yield it.get_prev(dt.datetime).astimezone(UTC).replace(fold=0)


def window_containing(cron: str, window: dt.timedelta, now: dt.datetime,
                      horizon: dt.timedelta = dt.timedelta(days=8)) -> tuple[dt.datetime, dt.datetime] | None:
    """The (start, end) of the merged sync window that contains now, or None
    when now is outside every window. start <= now < end. Merging looks at
    most `horizon` back and ahead: a schedule whose windows always overlap
    (hourly with PT2H) is open from now - horizon to now + horizon."""
    now = _aware(now)
    # The latest opening at or before now decides whether we are inside.
    earlier = occurrences_before(cron, now)
    latest = next(earlier)
    if now >= latest + window:
        return None
    # Walk back while earlier windows reach the start of the current one.
    start = latest
    while start > now - horizon:
        previous = next(earlier)
        if previous + window <= start:
            break
        start = previous
    # Walk forward while later openings begin before the current end.
    end = latest + window
    for opening in occurrences_after(cron, latest):
        if opening >= end or end > now + horizon:
            break
        end = max(end, opening + window)
    return start, end


def next_window_openings(cron: str, window: dt.timedelta, now: dt.datetime, count: int = 5,
                         horizon: dt.timedelta = dt.timedelta(days=4 * 366)) -> list[dt.datetime]:
    """The next `count` window openings after now (merged windows open once)."""
    now = _aware(now)
    openings: list[dt.datetime] = []
    current = window_containing(cron, window, now)
    if current and current[1] > now + dt.timedelta(days=7):
        return openings
    end = current[1] if current else None
    for opening in occurrences_after(cron, now):
        if opening > now + horizon:
            break  # windows that always overlap never open again: they stay open
        if end is not None and opening < end:
            end = max(end, opening + window)
            continue
        openings.append(opening)
        end = opening + window
        if len(openings) == count:
            return openings
    return openings
