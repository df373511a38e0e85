"""The latency model: an encoder's time on one machine as a function of its kept structure.

A latency table (``asrprune latency-table``, asrprune.latency_table) times, on the machine
and backend a model is meant for, each module of a Conformer block at a grid of widths:
the feed-forward module (block width x intermediate channels), attention (width x heads),
the convolution module (width), what every block does besides its modules (its final
norm; and with the gather and scatter of a block that reads part of the residual stream),
and the front end (residual width); and, for the SVD baseline, every shape of Linear layer
a full block has, dense and factored at a grid of ranks. Times are seconds summed over a
fixed set of utterance lengths, so attention's quadratic term is weighted as the data
weights it.

:class:`LatencyModel` reads such a table: each module's time is a bilinear interpolation
of its grid, made monotone first (a running maximum along each axis, so that removing a
unit never adds time), and a block's time is the sum of its modules'. A factored layer
adds the difference between its low-rank time (linear in the rank between grid points)
and the dense layer's it replaces, which can be negative or, at a high rank, positive: two
small products can cost more than one. Evaluated at the
gates' expected sizes it is a differentiable function of them, like the parameter and
FLOPs counts (:meth:`ConformerEncoder.expected_latency`); evaluated at a compact
structure's sizes it is the prediction for that model (:meth:`ConformerEncoder.
count_latency`): the two agree exactly for binary masks. A whole encoder takes longer
than its parts timed alone (its weights do not all stay in the caches): the table fits
``scale`` and a constant ``overhead`` (>= 0) from the teacher's and a half-size
reference encoder's measured times, and the prediction is scale x parts + overhead, the
teacher's exact. No prediction is negative.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asrprune.errors import AsrpruneError

Size = int | float | torch.Tensor
SURFACES = ("ffn", "mhsa", "conv")  # module -> (width x units) grid of seconds
CURVES = ("rest", "gather", "front")  # width -> seconds
PROFILE_KEYS = ("device", "backend", "threads")
# the architecture keys a latency table's parts are built from
TIMED_CONFIG = (
    "input_dim",
    "d_model",
    "num_heads",
    "head_dim",
    "ffn_dim",
    "conv_kernel",
    "subsampling",
    "subsampling_channels",
)


MIN_SLOPE_SHARE = 0.05  # of an axis's mean slope: the least slope a fitted segment keeps


def monotone(seconds: np.ndarray, grids: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """``seconds`` made non-decreasing along every axis by running maxima (an axis at a
    time: a running maximum along one axis keeps the others non-decreasing).

    With the axes' ``grids``, every segment also rises at least ``MIN_SLOPE_SHARE`` of
    its axis's mean slope: where noise made a stretch flat, a running maximum alone would
    leave the budget no gradient there, and gates in it would get no push from the
    latency target. Entries that are 0 along a whole axis (a module with no units: absent)
    stay 0.
    """
    out = np.asarray(seconds, dtype=float)
    absent = np.zeros(out.shape, dtype=bool)
    for axis in range(out.ndim):
        absent = absent | np.all(out == 0, axis=axis, keepdims=True)
    for axis in range(out.ndim):
        out = np.maximum.accumulate(out, axis=axis)
    for axis, g in enumerate(grids or ()):
        g = np.asarray(g, dtype=float)
        rise = np.take(out, -1, axis=axis) - np.take(out, 0, axis=axis)
        floor = MIN_SLOPE_SHARE * max(float(np.mean(rise)), 0.0) / (g[-1] - g[0])
        moved = np.moveaxis(out, axis, 0).copy()
        for i in range(1, len(g)):
            moved[i] = np.maximum(moved[i], moved[i - 1] + floor * (g[i] - g[i - 1]))
        out = np.where(absent, 0.0, np.moveaxis(moved, 0, axis))
    return out


def grid(full: int, points: int, least: int = 1, multiple: int = 1) -> list[int]:
    """``points`` integers from about ``full / points`` (at least ``least``) up to
    ``full``, evenly spaced and distinct; each but ``full`` rounded to a ``multiple`` (the
    widths ``prune.l0.width_multiple`` lets final masks keep)."""
    values = {full}
    for k in range(points - 1):
        v = max(least, round(full * (k + 1) / points))
        values.add(max(multiple, multiple * round(v / multiple)))
    return sorted(v for v in values if v <= full)


def _check_grid(grid: Sequence[float], where: str) -> list[float]:
    grid = [float(g) for g in grid]
    if len(grid) < 2 or any(b <= a for a, b in pairwise(grid)):
        raise AsrpruneError(f"{where}: expected at least 2 increasing grid points, got {grid}")
    return grid


def _segment(grid: torch.Tensor, x: Size) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the left grid point, weight of the right one) of ``x`` clamped to the
    grid; the weight is differentiable in ``x``."""
    x = torch.as_tensor(x, dtype=grid.dtype, device=grid.device).clamp(grid[0], grid[-1])
    i = torch.searchsorted(grid, x.detach(), right=True).clamp(1, len(grid) - 1) - 1
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


class LatencyModel:
    """Seconds of an encoder's parts, from a latency table (see the module docstring).

    Args:
        table: the JSON object ``asrprune latency-table`` writes: ``profile``,
            ``config`` (the architecture timed), ``width`` (grid of block widths), per
            module of ``SURFACES`` ``{"units": grid, "seconds": [[...] per width]}``,
            ``rest`` and ``front`` ``{"seconds": [... per width]}``,
            ``encoder.overhead`` and, optionally, ``lowrank``: a list of ``{"in", "out",
            "rows", "dense": seconds, "ranks": grid, "seconds": [... per rank]}``.
        where: the table's file, for messages.
    """

    def __init__(self, table: Mapping[str, Any], where: str = "latency table"):
        self.table, self.where = dict(table), where
        try:
            self.profile = {k: table["profile"][k] for k in PROFILE_KEYS}
            self.config = dict(table["config"])
            width = _check_grid(table["width"], f"{where}: width")
            self._width = torch.tensor(width, dtype=torch.float64)
            self._surfaces = {}
            for name in SURFACES:
                units = _check_grid(table[name]["units"], f"{where}: {name}.units")
                seconds = np.asarray(table[name]["seconds"], dtype=float)
                if seconds.shape != (len(width), len(units)):
                    raise AsrpruneError(
                        f"{where}: {name}.seconds: expected {len(width)} x {len(units)} "
                        f"(widths x units), got shape {seconds.shape}"
                    )
                self._surfaces[name] = (
                    torch.tensor(units, dtype=torch.float64),
                    torch.tensor(monotone(seconds, (width, units)), dtype=torch.float64),
                )
            self._curves = {}
            for name in CURVES:
                if name == "gather" and name not in table:
                    raise AsrpruneError(
                        f"{where}: no gather timings (a table from before 2026-12-07): "
                        "rebuild it (asrprune latency-table)"
                    )
                seconds = np.asarray(table[name]["seconds"], dtype=float)
                if seconds.shape != (len(width),):
                    raise AsrpruneError(
                        f"{where}: {name}.seconds: expected {len(width)} values, one per width"
                    )
                self._curves[name] = torch.tensor(monotone(seconds, (width,)), dtype=torch.float64)
            self._low_rank = {}
            for i, entry in enumerate(table.get("lowrank", ())):
                key = (int(entry["in"]), int(entry["out"]), str(entry["rows"]))
                ranks = _check_grid(entry["ranks"], f"{where}: lowrank[{i}].ranks")
                seconds = np.asarray(entry["seconds"], dtype=float)
                if seconds.shape != (len(ranks),):
                    raise AsrpruneError(
                        f"{where}: lowrank[{i}].seconds: expected {len(ranks)} values, one per rank"
                    )
                self._low_rank[key] = (
                    torch.tensor(ranks, dtype=torch.float64),
                    torch.tensor(monotone(seconds, (ranks,)), dtype=torch.float64),
                    float(entry["dense"]),
                )
            self.overhead = float(table["encoder"]["overhead"])
            self.scale = float(table["encoder"].get("scale", 1.0))
            if self.overhead < 0 or not self.scale > 0:
                raise AsrpruneError(
                    f"{where}: encoder.overhead must be >= 0 and encoder.scale > 0, got "
                    f"{self.overhead!r} and {self.scale!r}"
                )
        except (KeyError, TypeError, ValueError) as e:
            raise AsrpruneError(f"{where}: not a latency table ({type(e).__name__}: {e})") from e

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyModel:
        path = Path(path)
        if not path.is_file():
            raise AsrpruneError(f"{path}: latency table not found (asrprune latency-table)")
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise AsrpruneError(f"{path}: not JSON ({e})") from e
        return cls(table, str(path))

    def check_config(self, config: Any) -> None:
        """Refuse a model whose encoder blocks and front end are not those the table timed
        (the number of blocks, the predictor and the joiner do not enter the table)."""
        mine = config.to_dict()
        differ = [k for k in TIMED_CONFIG if mine.get(k) != self.config.get(k)]
        if differ:
            pairs = ", ".join(
                f"{k}: table {self.config[k]!r}, model {mine.get(k)!r}" for k in differ
            )
            raise AsrpruneError(f"{self.where}: timed another architecture ({pairs})")

    # -- parts ------------------------------------------------------------------

    def surface(self, name: str, width: Size, units: Size) -> torch.Tensor:
        """Seconds of module ``name`` at ``width`` with ``units`` kept (bilinear)."""
        grid_u, seconds = self._surfaces[name]
        i, a = _segment(self._width, width)
        j, b = _segment(grid_u, units)
        top = seconds[i, j] * (1 - b) + seconds[i, j + 1] * b
        bottom = seconds[i + 1, j] * (1 - b) + seconds[i + 1, j + 1] * b
        return top * (1 - a) + bottom * a

    def curve(self, name: str, width: Size) -> torch.Tensor:
        """Seconds of ``rest``, ``gather`` or ``front`` at ``width`` (linear)."""
        seconds = self._curves[name]
        i, a = _segment(self._width, width)
        return seconds[i] * (1 - a) + seconds[i + 1] * a

    def block(
        self,
        width: Size,
        heads: Size,
        ffn1: Size,
        ffn2: Size,
        conv: Size,
        stream: Size | None = None,
    ) -> torch.Tensor:
        """Seconds of one block of these (exact or expected) sizes in a residual stream of
        width ``stream`` (None: the block's own width); 0 for width 0. A block narrower
        than its stream pays the gather and scatter on top of its rest: in full from one
        dimension less than the stream, so the sum is exact for integer widths and
        differentiable in expected ones."""
        present = torch.as_tensor(width, dtype=torch.float64).clamp(max=1.0)
        rest = self.curve("rest", width)
        if stream is not None:
            narrower = (torch.as_tensor(stream, dtype=torch.float64) - width).clamp(0.0, 1.0)
            rest = rest + narrower * (self.curve("gather", width) - rest).clamp(min=0.0)
        modules = (
            self.surface("ffn", width, ffn1)
            + self.surface("mhsa", width, heads)
            + self.surface("conv", width, conv)
            + self.surface("ffn", width, ffn2)
            + rest
        )
        return present * modules

    def low_rank(self, layer: Mapping[str, Any]) -> float:
        """Seconds a factored ``layer`` ({"in", "out", "rank", "rows"}, as
        :func:`asrprune.model.lowrank.low_rank_layers` lists it) adds over the dense layer
        it replaces (negative where it saves time)."""
        key = (int(layer["in"]), int(layer["out"]), str(layer["rows"]))
        if key not in self._low_rank:
            raise AsrpruneError(
                f"{self.where}: no low-rank timing of a {key[0]} x {key[1]} layer on "
                f"{key[2]}; a table from before low-rank timing: rebuild it "
                "(asrprune latency-table)"
            )
        ranks, seconds, dense = self._low_rank[key]
        i, a = _segment(ranks, layer["rank"])
        return float(seconds[i] * (1 - a) + seconds[i + 1] * a) - dense

    def encoder(
        self,
        d_model: Size,
        blocks: Sequence[tuple[Size, ...]],
        low_rank: Sequence[Mapping[str, Any]] = (),
    ) -> torch.Tensor:
        """Seconds of an encoder of residual width ``d_model`` whose blocks have these
        (width, heads, ffn1, ffn2, conv) sizes and these factored layers (``low_rank``)."""
        parts = self.curve("front", d_model)
        for sizes in blocks:
            parts = parts + self.block(*sizes, stream=d_model)
        for layer in low_rank:
            parts = parts + self.low_rank(layer)
        return self.scale * parts + self.overhead
