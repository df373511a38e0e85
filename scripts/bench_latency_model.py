"""How well the latency model predicts the encoder time of pruned structures, without a
trained teacher: an encoder's time does not depend on its weights.

Builds the default architecture (config/config.yaml's ``model``) with untrained weights,
measures its latency table (asrprune.latency_table, the speed rule's profile: torch, CPU,
one thread) on utterance lengths like test-clean's, then draws pruned structures like the
grid's (heads, FFN channels, convolution modules, local and global hidden dimensions, at
kept fractions from 0.4 to 0.9), times their encoders side by side with the teacher's as
the speed rule does (asrprune.speed.measure_rtf: models taking turns round by round) and
prints, per structure, the modelled and measured fraction of the teacher's time kept.

    .venv/bin/python scripts/bench_latency_model.py --structures 16 --out bench-latency.json

The JSON keeps each run's table and every structure's rounds, so changes to the latency
model can be scored against the same timings (``--score bench-latency.json``); with
``--repeat 2`` it also says how far each structure's measured time moves between runs
when rounds are summarised by their median and by their fastest.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch
import yaml

from asrprune.data.features import Cmvn
from asrprune.latency_table import TableSettings, set_threads, time_table
from asrprune.model import ConformerEncoder, LatencyModel, ModelConfig, Transducer
from asrprune.model.structure import BlockStructure, EncoderStructure
from asrprune.pruning.settings import LatencyProfile
from asrprune.speed import SpeedModel, SpeedUtterance, measure_rtf

# test-clean-like durations (s): the default corpus's sentences of 4 to 20 words
SECONDS = (1.4, 2.0, 2.5, 2.9, 3.3, 3.7, 4.2, 4.8, 5.6, 7.0)


def default_config() -> ModelConfig:
    model = yaml.safe_load(Path("config/config.yaml").read_text())["model"]
    return ModelConfig.from_dict({**model, "vocab_size": 256})


def draw_structure(config: ModelConfig, rng: random.Random) -> EncoderStructure:
    """A pruned structure: one kept fraction per model, each block's sizes scattered
    around it, as L0 masks leave them (uneven blocks, some modules gone)."""
    mean = rng.uniform(0.4, 0.9)
    uneven = rng.random() < 0.5
    d = (
        config.d_model
        if rng.random() < 0.6
        else rng.randint(int(0.8 * config.d_model), config.d_model)
    )

    def share(mean: float, spread: float) -> float:
        return min(max(rng.gauss(mean, spread), 0.0), 1.0)

    blocks = []
    for _ in range(config.num_blocks):
        # half the models prune unevenly: some blocks almost gone, the rest almost whole
        f = rng.choice((rng.uniform(0.0, 0.35), rng.uniform(0.75, 1.0))) if uneven else mean
        if f < 0.05:  # a block pruned away entirely: the identity
            blocks.append(BlockStructure(0, 0, 0, False, ()))
            continue
        heads = sum(rng.random() < f for _ in range(config.num_heads))
        ffn1 = round(config.ffn_dim * share(f, 0.25))
        ffn2 = round(config.ffn_dim * share(f, 0.25))
        conv = rng.random() < min(1.0, f + 0.3)
        hidden = None
        if rng.random() < 0.5:
            width = max(1, round(d * share(f + 0.2, 0.15)))
            hidden = tuple(sorted(rng.sample(range(d), width))) if width < d else None
        blocks.append(BlockStructure(heads, ffn1, ffn2, conv, hidden))
    return EncoderStructure(d, tuple(blocks))


def measure(args) -> dict:
    profile = LatencyProfile()  # the speed rule's: cpu, torch, 1 thread
    set_threads(profile)
    torch.manual_seed(0)
    config = default_config()
    teacher = Transducer(config).eval()
    gen = torch.Generator().manual_seed(1)
    utts = [
        SpeedUtterance(f"u{i}", s, torch.randn(1, round(100 * s), config.input_dim, generator=gen))
        for i, s in enumerate(SECONDS)
    ]
    table = time_table(teacher, utts, profile, TableSettings())
    rng = random.Random(args.seed)
    structures = [draw_structure(config, rng) for _ in range(args.structures)]
    identity = Cmvn(torch.zeros(config.input_dim), torch.ones(config.input_dim))
    models = [SpeedModel("teacher", teacher, identity)]
    models += [
        SpeedModel(f"s{i}", Transducer(config, s).eval(), identity)
        for i, s in enumerate(structures)
    ]
    rtf = measure_rtf(models, utts, args.warmup_rounds, args.rounds)
    base = min(rtf["teacher"][0])
    rows = [
        {
            "name": f"s{i}",
            "structure": s.to_dict(),
            "measured_kept": min(rtf[f"s{i}"][0]) / base,
            "rounds": rtf[f"s{i}"][0],
        }
        for i, s in enumerate(structures)
    ]
    return {"table": table, "teacher_rtf": base, "teacher_rounds": rtf["teacher"][0], "rows": rows}


def before_table(table: dict) -> dict:
    """The same timings read as the latency model before 2026-12-07 read them: a block's
    rest with the gather and scatter below full width, FFN channels interpolated from 0 to
    the first grid point, and the teacher's excess over its parts a constant."""
    old = json.loads(json.dumps(table))
    widths, full = table["width"], table["config"]["d_model"]
    old["rest"]["seconds"] = [
        table["rest" if w == full else "gather"]["seconds"][i] for i, w in enumerate(widths)
    ]
    old["gather"] = old["rest"]  # no gather term on top
    keep = [i for i, u in enumerate(table["ffn"]["units"]) if u == 0 or u > 1]
    old["ffn"]["units"] = [table["ffn"]["units"][i] for i in keep]
    old["ffn"]["seconds"] = [[row[i] for i in keep] for row in table["ffn"]["seconds"]]
    old["encoder"] |= {"overhead": 0.0, "scale": 1.0}
    config = ModelConfig.from_dict(table["config"])
    parts = ConformerEncoder.count_latency(EncoderStructure.full(config), LatencyModel(old))
    whole = table["encoder"]["measured"]
    old["encoder"] |= {"overhead": max(whole - parts, 0.0), "scale": min(whole / parts, 1.0)}
    return old


def kept(table: dict, structure: EncoderStructure) -> float:
    """The model's predicted fraction of the teacher's time ``structure`` keeps."""
    latency = LatencyModel(table)
    full = EncoderStructure.full(ModelConfig.from_dict(table["config"]))
    return ConformerEncoder.count_latency(structure, latency) / ConformerEncoder.count_latency(
        full, latency
    )


def summary(errors: list[float]) -> str:
    mags = sorted(abs(e) for e in errors)
    return (
        f"median {statistics.median(errors):+.1f}%, median |error| "
        f"{statistics.median(mags):.1f}%, largest |error| {mags[-1]:.1f}%"
    )


def score(result: dict) -> list[float]:
    """Print modelled (now and as before) against measured kept time per structure; the
    errors (%) of the model now."""
    tables = {"now": result["table"], "before": before_table(result["table"])}
    errors: dict[str, list[float]] = {name: [] for name in tables}
    print("structure  measured  modelled  error %  before  error %")
    for row in result["rows"]:
        s = EncoderStructure.from_dict(row["structure"])
        cells = []
        for name, table in tables.items():
            modelled = kept(table, s)
            errors[name].append(100 * (modelled / row["measured_kept"] - 1))
            cells.append(f"{modelled:8.3f}  {errors[name][-1]:+7.1f}")
        print(f"{row['name']:>9}  {row['measured_kept']:8.3f}  " + "  ".join(cells))
    for name in tables:
        print(f"error ({name}): {summary(errors[name])}")
    return errors["now"]


def repeatability(results: list[dict]) -> None:
    """How far the measured kept time of each structure moves between runs, by the
    statistic the rounds are summarised with: median over median, or fastest over fastest
    (each run against the first)."""
    for name, stat in (("median", statistics.median), ("fastest", min)):

        def kept_times(r: dict, stat=stat) -> list[float]:
            base = stat(r["teacher_rounds"])
            return [stat(row["rounds"]) / base for row in r["rows"]]

        first = kept_times(results[0])
        moves = [
            abs(100 * (b / a - 1))
            for r in results[1:]
            for a, b in zip(first, kept_times(r), strict=True)
        ]
        print(
            f"between runs, {name} rounds: median move {statistics.median(moves):.1f}%, "
            f"largest {max(moves):.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure this many times (table and timings)"
    )
    parser.add_argument("--out", type=Path, help="write the tables and timings here (JSON)")
    parser.add_argument("--score", type=Path, help="score an earlier --out file, no timing")
    args = parser.parse_args()
    if args.score:
        results = json.loads(args.score.read_text())
    else:
        results = [measure(args) for _ in range(args.repeat)]
        if args.out:
            args.out.write_text(json.dumps(results))
    for i, result in enumerate(results):
        print(f"run {i}: teacher encoder RTF {result['teacher_rtf']:.5f}")
        score(result)
    if len(results) > 1:
        repeatability(results)


if __name__ == "__main__":
    main()
