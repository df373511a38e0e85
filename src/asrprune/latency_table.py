"""``asrprune latency-table``: time every part of a Conformer block at a grid of widths.

The table is what :class:`asrprune.model.latency.LatencyModel` reads (its docstring says
what each part is; the Linear layers, dense and factored, are timed at the full block's
shapes only, as the SVD baseline factors them). Every part is built at its width with
untrained weights (a dense kernel's time does not depend on the values), fed inputs as
long as a fixed set of test-clean utterances after subsampling (the speed rule's
selection, so attention's quadratic term is weighted as the timed data weight it) at batch
1, and timed in rounds: every part once per round, in the same order, after warm-up
rounds. A part's entry is its fastest round's seconds summed over the utterances: load
from elsewhere on a shared machine only adds time, and minima repeat between runs where
medians do not (the speed rule's ratios take minima too).

Parts timed alone run faster than inside a whole encoder, whose weights no longer all fit
the caches. So two whole encoders run in the same rounds, the teacher's and a reference
at half its heads and channels (untrained), and ``encoder.scale`` and
``encoder.overhead`` are fitted through both: whole = scale x parts + overhead (the
overhead kept >= 0 and the teacher's prediction exact).

Backends: ``torch`` (eager, as the speed rule times) on ``cpu`` or ``cuda``, and
``onnxruntime`` (CPU): each part exported to ONNX as the deploy stage exports the encoder
(asrprune.deploy.export), then timed in an ONNX Runtime session with the profile's
threads.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from asrprune.errors import AsrpruneError
from asrprune.io import write_json
from asrprune.model import (
    ConformerBlock,
    ConformerEncoder,
    Conv2dSubsampling,
    ConvModule,
    EncoderStructure,
    FeedForward,
    ModelConfig,
    RelPositionMultiHeadAttention,
    load_model,
)
from asrprune.model.conformer import relative_positions
from asrprune.model.latency import LatencyModel, grid
from asrprune.model.lowrank import LowRankLinear, layer_rows
from asrprune.model.structure import BlockStructure
from asrprune.pruning.settings import LatencyProfile
from asrprune.speed import SpeedUtterance, load_utterances, pin_one_thread, schedule


@dataclass(frozen=True)
class TableSettings:
    """How the table is measured: utterance lengths, rounds and grid points."""

    utterances: int = 10  # test-clean utterances whose lengths are timed
    warmup_rounds: int = 1
    rounds: int = 5
    width_points: int = 5  # grid points of block width (the largest is d_model)
    unit_points: int = 6  # grid points of FFN channels (0 and the full width among them;
    # the fewest a module can keep, width_multiple, is timed besides)
    width_multiple: int = 1  # FFN grid widths multiples of this (prune.l0.width_multiple)
    hidden_multiple: int | None = None  # block widths' (prune.l0.hidden_multiple; None: the above)

    def __post_init__(self):
        least = {"utterances": 1, "warmup_rounds": 0, "rounds": 1, "width_points": 2}
        least |= {"unit_points": 2, "width_multiple": 1}
        for key, lo in least.items():
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise AsrpruneError(f"prune.latency.{key}: expected an integer >= {lo}, got {v!r}")
        h = self.hidden_multiple
        if h is not None and (not isinstance(h, int) or isinstance(h, bool) or h < 1):
            raise AsrpruneError(
                f"prune.latency.hidden_multiple: expected an integer >= 1 or null, got {h!r}"
            )


class _Residual(nn.Module):
    """A block's module with its residual add (half-step for the feed-forward ones)."""

    def __init__(self, module: nn.Module, scale: float):
        super().__init__()
        self.module, self.scale = module, scale

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.module(x, *rest)


class _FirstTwo(nn.Module):
    """The front end or the encoder as a graph: (feats, lens) -> (output, lengths)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, feats: torch.Tensor, lens: torch.Tensor):
        out = self.module(feats, lens)
        return out[0], out[1]


# input names of each kind of part, and their dynamic axes (batch 1, time varies)
_INPUTS = {
    "x": {1: "T"},
    "pos_emb": {0: "P"},
    "valid": {1: "T"},
    "feats": {1: "F"},
    "lens": {},
}


@dataclass
class _Part:
    """One timed part: its table entry, its graph and its inputs per utterance."""

    key: tuple[str, int, int]  # (part, width index, units: channels, heads or 1)
    module: nn.Module  # forward(*inputs[i]), in eval mode on the device
    inputs: list[tuple[torch.Tensor, ...]]  # one tuple per utterance
    names: tuple[str, ...]  # of the inputs, keys of _INPUTS
    outputs: tuple[str, ...] = ("y",)


def build_parts(
    config: ModelConfig,
    frames: Sequence[int],
    widths: Sequence[int],
    ffn_units: Sequence[int],
    device: torch.device,
    rank_points: int,
) -> list[_Part]:
    """Every part of the table, each with its inputs for the given utterance ``frames``
    (input feature frames), in the order they are timed; factored layers at 1 and
    ``rank_points`` more ranks."""
    gen = torch.Generator().manual_seed(0)
    lengths = [int(Conv2dSubsampling.output_length(t, config.subsampling)) for t in frames]
    pos = [relative_positions(t, config.d_model, device) for t in lengths]
    valid = [torch.ones(1, t, dtype=torch.bool, device=device) for t in lengths]

    def x(t: int, d: int) -> torch.Tensor:
        return torch.randn(1, t, d, generator=gen).to(device)

    def part(key, module, inputs, names, outputs=("y",)) -> _Part:
        return _Part(key, module.eval().to(device), list(inputs), names, outputs)

    feats = [
        (
            torch.randn(1, t, config.input_dim, generator=gen).to(device),
            torch.tensor([t]).to(device),
        )
        for t in frames
    ]
    parts = []
    for w, d in enumerate(widths):
        states = [x(t, d) for t in lengths]
        for f in ffn_units:
            if f:
                ffn = _Residual(FeedForward(d, f), 0.5)
                parts.append(part(("ffn", w, f), ffn, [(s,) for s in states], ("x",)))
        with_pos = list(zip(states, pos, valid, strict=True))
        for heads in range(1, config.num_heads + 1):
            attn = RelPositionMultiHeadAttention(d, heads, config.head_dim, config.d_model)
            parts.append(
                part(("mhsa", w, heads), _Residual(attn, 1.0), with_pos, ("x", "pos_emb", "valid"))
            )
        conv = _Residual(ConvModule(d, config.d_model, config.conv_kernel), 1.0)
        parts.append(part(("conv", w, 1), conv, zip(states, valid, strict=True), ("x", "valid")))
        # a block with no module: its final norm, in a stream of its own width ("rest")
        # and, reading d of the residual stream's dimensions, with the gather and scatter
        bare = ConformerBlock(BlockStructure(0, 0, 0, False), d, config)
        names = ("x", "pos_emb", "valid")
        parts.append(part(("rest", w, 0), bare, zip(states, pos, valid, strict=True), names))
        gathered = BlockStructure(0, 0, 0, False, tuple(range(d)))
        bare = ConformerBlock(gathered, config.d_model, config)
        streams = [x(t, config.d_model) for t in lengths]
        inputs = zip(streams, pos, valid, strict=True)
        parts.append(part(("gather", w, 0), bare, inputs, names))
        front = Conv2dSubsampling(
            config.input_dim, config.subsampling_channels, d, config.subsampling
        )
        parts.append(
            part(("front", w, 0), _FirstTwo(front), feats, ("feats", "lens"), ("y", "y_lens"))
        )
    parts.extend(
        part((kind, k, rank), module, inputs, (name,))
        for kind, k, rank, module, inputs, name in _linear_parts(
            config, lengths, pos, x, points=rank_points
        )
    )
    return parts


def linear_shapes(config: ModelConfig) -> list[tuple[int, int, str, bool]]:
    """(in, out, rows, bias) of every distinct Linear layer of a full block: what the SVD
    baseline factors; rows as :func:`asrprune.model.lowrank.layer_rows` names them."""
    block = ConformerBlock(
        BlockStructure(config.num_heads, config.ffn_dim, config.ffn_dim), config.d_model, config
    )
    shapes = {}
    for name, m in block.named_modules():
        if isinstance(m, nn.Linear):
            key = (m.in_features, m.out_features, layer_rows(name))
            shapes.setdefault(key, m.bias is not None)
    return [(*key, bias) for key, bias in shapes.items()]


def low_rank_grid(d_in: int, d_out: int, points: int) -> list[int]:
    """Ranks timed for a d_in x d_out layer: 1, then ``points`` up to the rank at which a
    factorisation saves no weights."""
    return sorted({1, *grid(max(d_in * d_out // (d_in + d_out), 2), points)})


def _linear_parts(config: ModelConfig, lengths, pos, x, points: int):
    """(kind, shape index, rank, module, inputs, input name) of each dense ("linear") and
    factored ("lowrank", at 1 and ``points`` more ranks) layer timed, on a block's rows:
    the frames, or the position projection's 2T-1 relative positions."""
    for k, (d_in, d_out, rows, bias) in enumerate(linear_shapes(config)):
        if rows == "positions":
            inputs, name = [(p[:, :d_in],) for p in pos], "pos_emb"
        else:
            inputs, name = [(x(t, d_in),) for t in lengths], "x"
        yield "linear", k, 0, nn.Linear(d_in, d_out, bias=bias), inputs, name
        for rank in low_rank_grid(d_in, d_out, points):
            yield "lowrank", k, rank, LowRankLinear(d_in, d_out, rank, bias), inputs, name


def encoder_part(encoder: nn.Module, utts: Sequence[SpeedUtterance], device, key: int = 0) -> _Part:
    """A whole encoder on the utterances' own features (their values do not change its
    time); ``key`` 0 is the teacher's, 1 the reference's."""
    inputs = [(u.feats.to(device), torch.tensor([u.feats.size(1)]).to(device)) for u in utts]
    return _Part(
        ("encoder", key, 0), _FirstTwo(encoder).eval(), inputs, ("feats", "lens"), ("y", "y_lens")
    )


def reference_structure(config: ModelConfig) -> EncoderStructure:
    """The second whole encoder timed beside the teacher's: every block at half its heads
    and channels, so the two fix how the whole encoder's time scales with its parts'."""
    block = BlockStructure(max(1, config.num_heads // 2), config.ffn_dim // 2, config.ffn_dim // 2)
    return EncoderStructure(config.d_model, (block,) * config.num_blocks)


def fit_encoder(whole: Sequence[float], parts: Sequence[float]) -> dict[str, float]:
    """``scale`` and ``overhead`` with whole = scale * parts + overhead through the
    teacher's (first) and the reference's (second) timings; the overhead kept within
    [0, half the teacher's time], then the scale set so the teacher's prediction is exact."""
    (w_full, w_ref), (p_full, p_ref) = whole, parts
    slope = (w_full - w_ref) / (p_full - p_ref) if p_full != p_ref else w_full / p_full
    overhead = min(max(w_full - slope * p_full, 0.0), 0.5 * w_full)
    return {"overhead": overhead, "scale": (w_full - overhead) / p_full}


def bind(part: _Part, profile: LatencyProfile, folder: Path) -> Callable[[int], None]:
    """The call that runs ``part`` on utterance i with the profile's backend."""
    if profile.backend == "torch":

        def run(i: int) -> None:
            part.module(*part.inputs[i])

        return run
    from asrprune.deploy.export import export_graph
    from asrprune.deploy.runtime import ort_session

    path = folder / ("-".join(map(str, part.key)) + ".onnx")
    axes = {name: _INPUTS[name] for name in part.names}
    names = {"inputs": list(part.names), "outputs": list(part.outputs)}
    export_graph(part.module.cpu(), tuple(t.cpu() for t in part.inputs[0]), path, names, axes)
    session = ort_session(path, profile.threads)
    wanted = {i.name for i in session.get_inputs()}  # the exporter drops unused inputs
    feeds = [
        {n: t.cpu().numpy() for n, t in zip(part.names, inputs, strict=True) if n in wanted}
        for inputs in part.inputs
    ]

    def run_onnx(i: int) -> None:
        session.run(None, feeds[i])

    return run_onnx


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_parts(
    runs: dict[tuple, Callable[[int], None]],
    n_utts: int,
    warmup_rounds: int,
    rounds: int,
    device: torch.device,
) -> dict[tuple, float]:
    """Median over the timed rounds of each part's seconds summed over the utterances."""
    seconds: dict[tuple, list[float]] = {key: [] for key in runs}
    for r, key in schedule(list(runs), warmup_rounds, rounds):
        _sync(device)
        start = time.perf_counter()
        for i in range(n_utts):
            runs[key](i)
        _sync(device)
        if r >= 0:
            seconds[key].append(time.perf_counter() - start)
    return {k: min(v) for k, v in seconds.items()}


def assemble(
    measured: dict[tuple, float],
    config: ModelConfig,
    widths: Sequence[int],
    ffn_units: Sequence[int],
) -> dict:
    """The table's module entries from the timed parts; 0 s for 0 units (module absent)."""
    heads = list(range(config.num_heads + 1))
    units = {"ffn": list(ffn_units), "mhsa": heads, "conv": [0, 1]}
    table: dict = {"width": list(widths)}
    for name, grid_u in units.items():
        table[name] = {
            "units": grid_u,
            "seconds": [
                [measured[(name, w, u)] if u else 0.0 for u in grid_u] for w in range(len(widths))
            ],
        }
    for name in ("rest", "gather", "front"):
        table[name] = {"seconds": [measured[(name, w, 0)] for w in range(len(widths))]}
    table["lowrank"] = []
    for k, (d_in, d_out, rows, _) in enumerate(linear_shapes(config)):
        ranks = sorted(r for kind, i, r in measured if kind == "lowrank" and i == k)
        table["lowrank"].append(
            {
                "in": d_in,
                "out": d_out,
                "rows": rows,
                "dense": measured[("linear", k, 0)],
                "ranks": ranks,
                "seconds": [measured[("lowrank", k, r)] for r in ranks],
            }
        )
    return table


def table_grid(config: ModelConfig, settings: TableSettings) -> tuple[list[int], list[int]]:
    """The block widths and FFN channel counts the table times: multiples of the hidden
    and the width multiple, as the final masks keep them."""
    m = settings.width_multiple
    h = m if settings.hidden_multiple is None else settings.hidden_multiple
    widths = grid(config.d_model, settings.width_points, least=8, multiple=h)
    # the fewest channels a module can keep is timed too: a module's cost does not fall
    # linearly to 0 with its channels, it has a fixed part while present
    ffn_units = sorted({0, m, *grid(config.ffn_dim, settings.unit_points - 1, multiple=m)})
    return widths, ffn_units


def time_table(
    teacher: nn.Module,
    utts: Sequence[SpeedUtterance],
    profile: LatencyProfile,
    settings: TableSettings = TableSettings(),
) -> dict:
    """Time the parts of the unpruned ``teacher``'s architecture and its own encoder on
    ``utts``' lengths with the profile's backend (threads already set): the table."""
    config = teacher.config
    device = torch.device(profile.device)
    teacher = teacher.eval().to(device)
    frames = [u.feats.size(1) for u in utts]
    widths, ffn_units = table_grid(config, settings)
    parts = build_parts(config, frames, widths, ffn_units, device, settings.unit_points - 1)
    reference = reference_structure(config)
    parts.append(encoder_part(teacher.encoder, utts, device))
    parts.append(encoder_part(ConformerEncoder(config, reference).to(device), utts, device, 1))
    print(
        f"latency table ({profile.name}): {len(parts)} parts, {len(utts)} utterances, "
        f"{settings.warmup_rounds} + {settings.rounds} rounds",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="asrprune-latency-") as folder:
        with torch.no_grad():  # an ONNX export traces with plain (not inference) tensors
            runs = {p.key: bind(p, profile, Path(folder)) for p in parts}
        measured = time_parts(runs, len(utts), settings.warmup_rounds, settings.rounds, device)
    table = {
        "profile": asdict(profile),
        "settings": asdict(settings),
        "config": config.to_dict(),
        "utterances": [u.id for u in utts],
        "frames": frames,
        "audio_seconds": sum(u.seconds for u in utts),
        "host": {"machine": platform.machine(), "torch": torch.__version__},
        **assemble(measured, config, widths, ffn_units),
        "encoder": {"overhead": 0.0, "scale": 1.0},
    }
    bare = LatencyModel(table)  # the parts alone: no overhead, no scale
    whole = [measured[("encoder", k, 0)] for k in (0, 1)]
    sums = [ConformerEncoder.count_latency(s, bare) for s in (teacher.encoder.structure, reference)]
    table["encoder"] = {
        "measured": whole[0],
        "parts": sums[0],
        "reference": {"structure": reference.to_dict(), "measured": whole[1], "parts": sums[1]},
        **fit_encoder(whole, sums),
    }
    print(
        f"latency table: teacher encoder {whole[0]:.4f} s measured, {sums[0]:.4f} s as the "
        f"sum of its parts; reference {whole[1]:.4f} and {sums[1]:.4f} s: whole = "
        f"{table['encoder']['scale']:.3f} x parts + {table['encoder']['overhead']:.4f} s",
        file=sys.stderr,
    )
    return table


def set_threads(profile: LatencyProfile) -> None:
    """The profile's intra-op threads for this process."""
    if profile.threads == 1:
        pin_one_thread()
    else:
        torch.set_num_threads(profile.threads)


def measure_latency_table(
    model_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    profile: LatencyProfile | None = None,
    settings: TableSettings = TableSettings(),
) -> dict:
    """Time the parts of the model's architecture and the model's own encoder (the
    teacher) on ``data_dir``'s test-clean lengths; write the table to ``out``.
    ``profile`` None: one torch thread on the CPU, the speed rule's."""
    profile = LatencyProfile() if profile is None else profile
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise AsrpruneError("latency table: the profile's device is cuda, but none is available")
    set_threads(profile)
    teacher = load_model(model_path).model
    if teacher.encoder.structure != teacher.encoder.structure.full(teacher.config):
        raise AsrpruneError(f"{model_path}: the latency table is timed on the unpruned teacher")
    utts: list[SpeedUtterance] = load_utterances(data_dir, settings.utterances)
    table = time_table(teacher, utts, profile, settings)
    write_json(out, table)
    return table
