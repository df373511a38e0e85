"""Rounding real shares to whole units so that they still add up to a given total."""

from __future__ import annotations

import math
from collections.abc import Sequence


def largest_remainder(shares: Sequence[float], total: int) -> list[int]:
    """Whole numbers, each the floor or the ceiling of its share, summing to ``total``
    (Hamilton's method): the floors, plus one for the largest fractional parts; ties go to
    the earlier share. ``total`` must lie between the sum of the floors and that of the
    ceilings."""
    counts = [math.floor(s) for s in shares]
    extra = total - sum(counts)
    if not 0 <= extra <= len(shares):
        raise ValueError(f"cannot share {total} out over {list(shares)}")
    order = sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))
    for i in order[:extra]:
        counts[i] += 1
    return counts
