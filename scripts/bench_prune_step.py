"""Cost of one L0 pruning step against one teacher training step, side by side.

Both trainers (the teacher's: transducer loss; ours: gates, distillation from the frozen
teacher, Lagrangian) take the same batches, alternating step by step in one process, so
machine noise hits both alike. Prints the median seconds of each and their ratio.

    .venv/bin/python scripts/bench_prune_step.py --teacher results/embedded/models/teacher.pt \\
        --data results/embedded/data --steps 20
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from asrprune.cli import positive_int
from asrprune.config import settings_from_dict
from asrprune.data.batching import UtteranceDataset
from asrprune.model import Transducer
from asrprune.pruning.job import JobData, run_splits
from asrprune.pruning.l0 import L0Settings, l0_setup
from asrprune.train import Trainer, TrainSettings

SPARSITY = 0.5  # the pruning target of the timed steps (their cost does not depend on it)


def prune_trainer(
    teacher: Transducer,
    method_name: str,
    l0: L0Settings,
    settings: TrainSettings,
    train_data: UtteranceDataset,
    tmp: str | Path,
) -> Trainer:
    """The pruning job's trainer (pruning.l0.l0_setup) in ``tmp``/b; freezes ``teacher``."""
    setup = l0_setup(teacher, method_name, SPARSITY, l0, settings)
    return Trainer(
        setup.student,
        train_data,
        None,
        settings,
        Path(tmp) / "b",
        loss_fn=setup.loss,
        extra_modules=setup.extra_modules,
        param_groups=setup.param_groups,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", required=True, help="a run's data/ folder")
    p.add_argument("--method", default="l0-params")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each (after 3 warm-up)")
    p.add_argument("--max-frames", type=int, default=4800)
    p.add_argument("--threads", type=positive_int, default=2)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    data = JobData.load(a.teacher, run_splits(a.data))
    settings = settings_from_dict(
        TrainSettings,
        {"max_steps": 10**6, "max_frames": a.max_frames, "eval_every": 0, "specaug_start_step": 0},
        "bench",
    )
    trained = copy.deepcopy(data.teacher).train()  # what the teacher's trainer updates
    with tempfile.TemporaryDirectory() as tmp:
        plain = Trainer(trained, data.train, None, settings, Path(tmp) / "a")
        prune = prune_trainer(data.teacher, a.method, L0Settings(), settings, data.train, tmp)
        batches = plain._batches()
        times: dict[str, list[float]] = {"teacher": [], "prune": []}
        for i in range(a.steps + 3):
            batch = next(batches)
            for name, trainer in (("teacher", plain), ("prune", prune)):
                start = time.perf_counter()
                trainer.train_step(batch)
                if i >= 3:
                    times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "method": a.method,
                "steps": a.steps,
                "threads": a.threads,
                "teacher_step_s": round(median["teacher"], 4),
                "prune_step_s": round(median["prune"], 4),
                "ratio": round(median["prune"] / median["teacher"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
