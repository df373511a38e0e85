"""Markdown pipe tables, the form of every table the results files write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    left: int = 1,
    align: Sequence[str] | None = None,
) -> str:
    """``header`` then ``rows`` (cells already formatted), newline-terminated. The first
    ``left`` columns are left-aligned (names), the rest right-aligned (numbers), unless
    ``align`` gives each column's rule (``---`` or ``---:``)."""
    if align is None:
        align = ("---",) * left + ("---:",) * (len(header) - left)
    lines = [header, align, *rows]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)
