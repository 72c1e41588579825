"""Sets of time spans, for the data periods of a consent (sans-io).

A span set is a sorted tuple of disjoint, non-adjacent half-open ``(start, end)`` pairs
of milliseconds. `NEVER` and `FOREVER` are finite sentinels so arithmetic stays integer;
they stand for "no bound" and become None in a `DateWindow`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final, TypeAlias

from metaworld.records.dates import datetime_ms
from metaworld.records.view import DateWindow

NEVER: Final = -(2**62)
FOREVER: Final = 2**62

Spans: TypeAlias = tuple[tuple[int, int], ...]
EMPTY: Final[Spans] = ()
ALL: Final[Spans] = ((NEVER, FOREVER),)


def span(start: dt.datetime | None, end: dt.datetime | None) -> Spans:
    """The span set of one period (None bounds are open)."""
    lo = NEVER if start is None else max(NEVER, datetime_ms(start))
    hi = FOREVER if end is None else min(FOREVER, datetime_ms(end))
    return ((lo, hi),) if lo < hi else EMPTY


def normalize(pairs: Iterable[tuple[int, int]]) -> Spans:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(p for p in pairs if p[0] < p[1]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def union(a: Spans, b: Spans) -> Spans:
    return normalize(a + b)


def intersect(a: Spans, b: Spans) -> Spans:
    return normalize((max(lo1, lo2), min(hi1, hi2)) for lo1, hi1 in a for lo2, hi2 in b)


def subtract(a: Spans, b: Spans) -> Spans:
    return intersect(a, complement(b))


def complement(a: Spans) -> Spans:
    edges = [NEVER]
    for lo, hi in a:
        edges += [lo, hi]
    edges.append(FOREVER)
    return normalize(zip(edges[::2], edges[1::2], strict=True))


def windows(a: Spans) -> list[DateWindow]:
    return [DateWindow(None if lo <= NEVER else lo, None if hi >= FOREVER else hi) for lo, hi in a]


def contains(a: Spans, moment_ms: int) -> bool:
    return any(lo <= moment_ms < hi for lo, hi in a)
