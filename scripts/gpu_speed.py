"""GPU speed: does a structurally pruned encoder run faster on a GPU, and by how much?

The workflow's speed rule times models on one CPU thread. This script times the encoder
forward pass on a GPU (or any device) for the full model of a config and for compact
structures that keep a fraction of every prunable unit, or for model files the workflow
made, side by side in one process, and prints JSON: milliseconds per forward (median
over rounds, CUDA events), the real-time factor, and each structure's time and FLOPs as
a ratio to the full model's.

    .venv/bin/python scripts/gpu_speed.py                              # paper-scale model
    .venv/bin/python scripts/gpu_speed.py --config config/config.yaml  # the default model
    .venv/bin/python scripts/gpu_speed.py --models results/embedded/models/*.pt

A kept fraction k keeps round(k * n) of the heads and the FFN channels of every block
and of the residual stream's hidden dimensions (widths rounded to ``--multiple``), and
every convolution module. Parameters fall about as k^2: 0.9, 0.8 and 0.7 remove 15-19,
32-34 and 44-46% of the blocks' at the default and paper dimensions. It is a uniform
stand-in for what L0 pruning leaves, which varies per block. Timing depends on the
structure, not the weights, so the synthetic models are randomly initialised. Inputs are
random features of ``--seconds`` per utterance, ``--batch`` utterances per forward; the
models take turns round by round, so a slow spell of the device hits them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from asrprune.cli import positive_int
from asrprune.config import load_config
from asrprune.model import ModelConfig, Transducer, load_model
from asrprune.model.structure import BlockStructure, EncoderStructure

REPO = Path(__file__).resolve().parents[1]
FRAMES_PER_SECOND = 100  # 10 ms feature frames


def uniform_structure(config: ModelConfig, keep: float, multiple: int = 1) -> EncoderStructure:
    """Every block keeps ``keep`` of its heads, FFN channels and convolution; the residual
    stream keeps ``keep`` of its dimensions. FFN and residual widths are rounded to a
    multiple of ``multiple`` (GPU matrix units favour multiples of 8 or more)."""
    if not 0 < keep <= 1:
        raise ValueError(f"a kept fraction must be in (0, 1], got {keep}")

    def width(n: int) -> int:
        return max(multiple, round(n * keep / multiple) * multiple)

    ffn = width(config.ffn_dim)
    block = BlockStructure(
        heads=max(1, round(config.num_heads * keep)), ffn1=ffn, ffn2=ffn, conv=True
    )
    d_model = width(config.d_model)
    return EncoderStructure(d_model=d_model, blocks=(block,) * config.num_blocks)


class Timer:
    """Wall time of a callable on ``device``: CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn) -> float:
        """Seconds one call of ``fn`` took."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000
        start_s = time.perf_counter()
        fn()
        return time.perf_counter() - start_s


def time_encoders(
    models: dict[str, Transducer],
    feats: torch.Tensor,
    lengths: torch.Tensor,
    device: torch.device,
    bf16: bool,
    warmup: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Seconds per encoder forward of each model, one list entry per timed round."""
    timer = Timer(device)
    times: dict[str, list[float]] = {name: [] for name in models}
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), amp:
        for r in range(-warmup, rounds):
            for name, model in models.items():
                t = timer(lambda m=model: m.encoder(feats, lengths))
                if r >= 0:
                    times[name].append(t)
    return times


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        nargs="+",
        default=[str(REPO / "config/config.yaml"), str(REPO / "config/librispeech.yaml")],
        help="config files, merged in order; their model is the full one",
    )
    p.add_argument(
        "--keep",
        type=float,
        nargs="+",
        default=[0.9, 0.8, 0.7],
        help="kept fractions of the synthetic compact structures",
    )
    p.add_argument(
        "--multiple", type=int, default=1, help="round kept widths to a multiple of this"
    )
    p.add_argument("--models", nargs="+", help="time these model files instead (first: full)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="utterances a forward")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per utterance")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds")
    p.add_argument("--device", default=None, help="default: the GPU if there is one")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = not a.fp32 and (device.type != "cuda" or torch.cuda.is_bf16_supported())

    torch.manual_seed(0)
    if a.models:
        models = {Path(m).stem: load_model(m).model for m in a.models}
    else:
        config = load_config(*a.config)
        values = {**config["model"], "vocab_size": config["data"]["tokenizer"]["vocab_size"]}
        model_config = ModelConfig.from_dict(values, "model")
        models = {"full": Transducer(model_config)}
        for keep in a.keep:
            structure = uniform_structure(model_config, keep, a.multiple)
            models[f"keep-{keep:g}"] = Transducer(model_config, structure)
    models = {name: m.to(device).eval() for name, m in models.items()}
    frames = round(a.seconds * FRAMES_PER_SECOND)
    full_name = next(iter(models))

    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "bf16": bf16,
        "seconds_per_utterance": a.seconds,
        "rounds": a.rounds,
        "models": {},
        "timings": [],
    }
    flops: dict[str, int] = {}
    for name, m in models.items():
        size = m.size_report(frames)
        report["models"][name] = {
            "d_model": m.structure.d_model,
            "encoder_params": size["encoder_params"],
            "sparsity": round(size["sparsity"], 4),
            "encoder_gflops": round(size["encoder_flops"] / 1e9, 2),
        }
        flops[name] = size["encoder_flops"]
    g = torch.Generator().manual_seed(0)
    for batch in a.batch:
        feats = torch.randn(batch, frames, models[full_name].config.input_dim, generator=g)
        lengths = torch.full((batch,), frames)
        times = time_encoders(
            models, feats.to(device), lengths.to(device), device, bf16, a.warmup, a.rounds
        )
        full_ms = statistics.median(times[full_name]) * 1000
        for name, ts in times.items():
            ms = statistics.median(ts) * 1000
            report["timings"].append(
                {
                    "model": name,
                    "batch": batch,
                    "ms_median": round(ms, 3),
                    "ms_min": round(min(ts) * 1000, 3),
                    "ms_max": round(max(ts) * 1000, 3),
                    "rtf": round(ms / 1000 / (batch * a.seconds), 6),
                    "time_ratio": round(ms / full_ms, 3),
                    "flops_ratio": round(flops[name] / flops[full_name], 3),
                }
            )
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
