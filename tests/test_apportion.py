"""Largest-remainder rounding: floors or ceilings that add up to the total."""

import math

import pytest

from asrprune.apportion import largest_remainder


@pytest.mark.parametrize(
    ("shares", "total", "expected"),
    [
        ([1.4, 1.4, 1.4], 4, [2, 1, 1]),  # a tie goes to the earliest share
        ([2.23, 1.32, 1.36, 3.0], 8, [2, 1, 2, 3]),  # rounded one by one: 7
        ([0.5, 0.5], 1, [1, 0]),
        ([3.0, 0.0], 3, [3, 0]),
    ],
)
def test_shares_round_to_the_total(shares, total, expected):
    counts = largest_remainder(shares, total)
    assert counts == expected
    assert sum(counts) == total
    assert all(math.floor(s) <= c <= math.ceil(s) for s, c in zip(shares, counts, strict=True))


def test_an_unreachable_total_is_refused():
    with pytest.raises(ValueError, match="cannot share 5"):
        largest_remainder([1.5, 1.5], 5)
