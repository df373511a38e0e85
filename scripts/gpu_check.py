"""GPU check: the paper-scale model's training speed and memory on one GPU, before a run.

Times teacher training steps and L0 pruning steps (gates, distillation from the frozen
teacher, Lagrangian) with the workflow's own model, losses and trainer, at the dimensions
of a config (default: config/librispeech.yaml merged over config/config.yaml), on synthetic
batches of LibriSpeech-like lengths at one GPU's share of the configured batch budget
(max_frames / the rule's gpu count). Prints JSON: steps per second, peak GPU memory, and
the wall time of the config's schedule at that speed (a job with N GPUs takes about as
long per step as one GPU with its share, if data parallelism scales).

    .venv/bin/python scripts/gpu_check.py                  # on a machine with a GPU
    .venv/bin/python scripts/gpu_check.py --tiny --teacher-steps 2 --prune-steps 2  # CPU smoke

The synthetic lengths follow LibriSpeech's training set roughly (utterances of 12.3 s on
average, 1-35 s; about 3.1 BPE-5000 pieces a second: 2.7 words a second, 1.15 pieces a
word). Each measured phase starts with a batch of the longest utterances, so the peak
memory covers the worst bucket, then draws a length per step, as the bucketed sampler's
batches come.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from asrprune.cli import positive_int
from asrprune.config import load_config, settings_from_dict
from asrprune.data.batching import Batch
from asrprune.model import ModelConfig, Transducer
from asrprune.pruning.l0 import METHODS, L0Settings, l0_setup
from asrprune.train import Trainer, TrainSettings

REPO = Path(__file__).resolve().parents[1]
FRAMES_PER_SECOND = 100  # 10 ms feature frames
PIECES_PER_SECOND = 3.1
# LibriSpeech-like utterance lengths (s): mean, spread, shortest, longest
LENGTHS = {"paper": (12.3, 4.0, 1.0, 35.0), "tiny": (2.0, 0.5, 0.5, 4.0)}
# --tiny: a model and batch that a CPU steps through in well under a second
TINY_MODEL = dict(
    d_model=32,
    num_blocks=2,
    num_heads=2,
    ffn_dim=64,
    predictor_dim=32,
    joiner_dim=32,
    subsampling_channels=8,
)
TINY_VOCAB, TINY_FRAMES = 64, 800
SPARSITY = 0.5  # the pruning target of the timed steps (their cost does not depend on it)


class SyntheticData:
    """The attributes the trainer reads from a dataset; batches come from ``batch``."""

    def __init__(self, longest_frames: int):
        self.lengths = [longest_frames]
        self.utts = [type("Utt", (), {"id": "synthetic"})()]

    def __len__(self) -> int:
        return 1


class Batches:
    """Random features and tokens in bucketed batches under a frame budget."""

    def __init__(self, budget: int, lengths: tuple[float, float, float, float], vocab: int):
        self.budget, self.vocab = budget, vocab
        self.mean, self.spread, self.shortest, self.longest = lengths
        self.rng = random.Random(0)
        self.g = torch.Generator().manual_seed(0)

    def _seconds(self) -> float:
        s = self.rng.gauss(self.mean, self.spread)
        return min(max(s, self.shortest), self.longest)

    def make(self, seconds: float | None = None) -> Batch:
        """One bucket: utterances of 90-100% of ``seconds`` (drawn if None), as many as fit."""
        seconds = self._seconds() if seconds is None else seconds
        longest = min(round(seconds * FRAMES_PER_SECOND), self.budget)
        count = max(self.budget // longest, 1)
        frames = [longest] + [round(longest * self.rng.uniform(0.9, 1.0)) for _ in range(count - 1)]
        pieces = [max(1, round(f / FRAMES_PER_SECOND * PIECES_PER_SECOND)) for f in frames]
        feats = torch.zeros(count, longest, 80)  # (B, T, 80)
        tokens = torch.zeros(count, max(pieces), dtype=torch.long)  # (B, U)
        for b, (t, u) in enumerate(zip(frames, pieces, strict=True)):
            feats[b, :t] = torch.randn(t, 80, generator=self.g)
            tokens[b, :u] = torch.randint(1, self.vocab, (u,), generator=self.g)
        return Batch(
            [f"synthetic-{b}" for b in range(count)],
            feats,
            torch.tensor(frames),
            tokens,
            torch.tensor(pieces),
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(trainer: Trainer, batches: Batches, warmup: int, steps: int) -> dict:
    """Steps per second over ``steps`` timed steps after ``warmup`` (the first of which is
    the longest bucket), and the peak GPU memory of all of them."""
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        trainer.train_step(batches.make(batches.longest if i == 0 else None))
    timed = [batches.make() for _ in range(steps)]
    _sync(device)
    start = time.perf_counter()
    for batch in timed:
        trainer.train_step(batch)
    _sync(device)
    elapsed = time.perf_counter() - start
    out = {
        "steps": steps,
        "steps_per_s": round(steps / elapsed, 4),
        "seconds_per_step": round(elapsed / steps, 4),
        "audio_seconds_per_step": round(
            sum(int(b.feat_lens.sum()) for b in timed) / steps / FRAMES_PER_SECOND, 1
        ),
        "peak_gpu_memory_gib": None,
        "peak_gpu_reserved_gib": None,
    }
    if device.type == "cuda":
        out["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        out["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
    return out


def prune_trainer(
    teacher: Transducer,
    method_name: str,
    l0: L0Settings,
    settings: TrainSettings,
    out_dir: Path,
    device: str | None = None,
) -> Trainer:
    """The pruning job's trainer (pruning.l0.l0_setup) on synthetic data of
    ``settings.max_frames`` frames; freezes ``teacher``."""
    setup = l0_setup(teacher, method_name, SPARSITY, l0, settings, device)
    return Trainer(
        setup.student,
        SyntheticData(settings.max_frames),
        None,
        settings,
        out_dir,
        loss_fn=setup.loss,
        extra_modules=setup.extra_modules,
        param_groups=setup.param_groups,
        device=device,
    )


def _settings(section: dict, frames: int, where: str) -> TrainSettings:
    # batches come from Batches, not the trainer's loader: no loader workers
    values = {
        **section,
        "max_frames": frames,
        "eval_every": 0,
        "max_steps": 10**6,
        "num_workers": 0,
    }
    return settings_from_dict(TrainSettings, values, where)


def _per_gpu_frames(config: dict, rule: str, max_frames: int) -> tuple[int, int]:
    cluster = config["cluster"]
    gpus = {**cluster["default"], **cluster["rules"].get(rule, {})}["gpu"]
    return max_frames // max(gpus, 1), max(gpus, 1)


def schedule(config: dict, teacher: dict, prune: dict, gpus: dict) -> dict:
    """Hours of the config's schedule at the measured speeds (jobs one after another).

    Our L0 methods prune for prune.train.max_steps at the pruning speed, then fine-tune;
    the baselines train for both budgets. Compact and low-rank models step faster than the
    teacher, so the teacher's speed makes those parts upper bounds.
    """
    p = config["prune"]
    train_steps, finetune_steps = p["train"]["max_steps"], p["finetune"]["max_steps"]

    def hours(steps: int, steps_per_s: float) -> float:
        return steps / steps_per_s / 3600

    teacher_h = hours(config["teacher"]["max_steps"], teacher["steps_per_s"])
    l0_h = hours(train_steps, prune["steps_per_s"]) + hours(finetune_steps, teacher["steps_per_s"])
    # parp trains the gated model with pinned gates: about the teacher's step
    baseline_h = hours(train_steps + finetune_steps, teacher["steps_per_s"])
    l0_jobs = sum(m.startswith("l0-") for m in p["methods"]) * len(p["sparsities"])
    other_jobs = (len(p["methods"]) * len(p["sparsities"])) - l0_jobs
    gpu_hours = (
        teacher_h * gpus["train_teacher"]
        + (l0_jobs * l0_h + other_jobs * baseline_h) * gpus["prune"]
    )
    return {
        "gpus_per_job": gpus,
        "teacher_steps": config["teacher"]["max_steps"],
        "teacher_hours": round(teacher_h, 1),
        "prune_steps": train_steps,
        "finetune_steps": finetune_steps,
        "l0_job_hours": round(l0_h, 1),
        "baseline_job_hours_at_most": round(baseline_h, 1),
        "l0_jobs": l0_jobs,
        "baseline_jobs": other_jobs,
        "all_jobs_in_sequence_hours": round(
            teacher_h + l0_jobs * l0_h + other_jobs * baseline_h, 1
        ),
        "gpu_hours": round(gpu_hours, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        nargs="+",
        default=[str(REPO / "config/config.yaml"), str(REPO / "config/librispeech.yaml")],
        help="config files, merged in order (as snakemake --configfile merges them)",
    )
    p.add_argument("--teacher-steps", type=int, default=20, help="timed teacher steps")
    p.add_argument("--prune-steps", type=int, default=20, help="timed pruning steps")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=50,
        help="untimed steps before each: on a GPU the first batch of each padded length "
        "plans its convolutions, which the steps of a long run no longer pay",
    )
    p.add_argument("--method", default="l0-params", choices=sorted(METHODS))
    p.add_argument("--frames", type=int, help="per-GPU batch budget; default from the config")
    p.add_argument("--device", default=None, help="default: the GPU if there is one")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--tiny", action="store_true", help="tiny dimensions: a CPU smoke test")
    a = p.parse_args(argv)
    if min(a.teacher_steps, a.prune_steps, a.warmup_steps) < 1:
        p.error("--teacher-steps, --prune-steps and --warmup-steps must be at least 1")
    if a.threads:
        torch.set_num_threads(a.threads)

    config = load_config(*a.config)
    model_values = {**config["model"], "vocab_size": config["data"]["tokenizer"]["vocab_size"]}
    teacher_frames, teacher_gpus = _per_gpu_frames(
        config, "train_teacher", config["teacher"]["max_frames"]
    )
    prune_frames, prune_gpus = _per_gpu_frames(
        config, "prune", config["prune"]["train"]["max_frames"]
    )
    lengths = LENGTHS["paper"]
    if a.tiny:
        model_values.update(TINY_MODEL, vocab_size=TINY_VOCAB)
        teacher_frames = prune_frames = TINY_FRAMES
        lengths = LENGTHS["tiny"]
    if a.frames:
        teacher_frames = prune_frames = a.frames
    model_config = ModelConfig.from_dict(model_values, "model")
    l0 = settings_from_dict(L0Settings, config["prune"]["l0"], "prune.l0")

    torch.manual_seed(0)
    teacher = Transducer(model_config)
    counts = teacher.param_counts()
    report: dict = {
        "device": None,
        "model": {
            **{k: model_values[k] for k in ("d_model", "num_blocks", "num_heads", "ffn_dim")},
            "conv_kernel": model_values["conv_kernel"],
            "vocab_size": model_values["vocab_size"],
            "encoder_params": counts.encoder,
            "block_params": counts.prunable,
            "total_params": counts.total,
        },
        "tiny": a.tiny,
    }
    with tempfile.TemporaryDirectory() as tmp:
        t_settings = _settings(config["teacher"], teacher_frames, "teacher")
        data = SyntheticData(teacher_frames)
        trainer = Trainer(teacher, data, None, t_settings, Path(tmp) / "t", device=a.device)
        report["device"] = (
            torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu"
        )
        report["bf16"] = trainer.amp
        batches = Batches(teacher_frames, lengths, model_config.vocab_size)
        report["teacher"] = {
            "per_gpu_frames": teacher_frames,
            **measure(trainer, batches, a.warmup_steps, a.teacher_steps),
        }
        frozen = trainer.model.eval()  # the teacher the student distils from
        del trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the teacher's optimiser state is gone

        p_settings = _settings(config["prune"]["train"], prune_frames, "prune.train")
        pruner = prune_trainer(frozen, a.method, l0, p_settings, Path(tmp) / "p", a.device)
        batches = Batches(prune_frames, lengths, model_config.vocab_size)
        report["prune"] = {
            "method": a.method,
            "per_gpu_frames": prune_frames,
            **measure(pruner, batches, a.warmup_steps, a.prune_steps),
        }
    gpus = {"train_teacher": teacher_gpus, "prune": prune_gpus}
    report["schedule"] = schedule(config, report["teacher"], report["prune"], gpus)
    if a.tiny:
        report["schedule"]["note"] = "tiny dimensions: these hours say nothing about the paper"
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
