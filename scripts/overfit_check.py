"""Can the model over-fit a few utterances of a run's corpus? A check for recipe work.

If the transducer cannot drive its losses down on one fixed batch, the model, losses or
trainer are broken; if it can, a teacher that does not learn has a recipe problem.

    .venv/bin/python scripts/overfit_check.py --data results/embedded/data --utterances 32
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from asrprune.cli import positive_int
from asrprune.data.manifest import read_manifest, write_manifest
from asrprune.train import train_teacher


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a run's data/ folder")
    p.add_argument("--utterances", type=int, default=32, help="training utterances, one batch")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=positive_int, default=2)
    a = p.parse_args()

    data = Path(a.data)
    train = read_manifest(data / "manifests/train.jsonl")
    # evenly spaced over the corpus, so voices and lengths vary
    chosen = train[:: max(1, len(train) // a.utterances)][: a.utterances]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "subset.jsonl"
        write_manifest(manifest, chosen)
        frames = 100 * max(u.duration for u in chosen) + 100
        train_teacher(
            train_manifest=manifest,
            train_features=data / "features/train",
            dev_manifest=manifest,
            dev_features=data / "features/train",
            tokenizer_path=data / "bpe.model",
            cmvn_path=data / "cmvn.json",
            model_config={"num_blocks": a.blocks, "dropout": 0.0},
            settings={
                "max_steps": a.steps,
                "max_frames": int(frames * len(chosen)),  # the whole subset is one batch
                "peak_lr": a.lr,
                "warmup_steps": a.steps // 4,
                "final_lr_ratio": 1.0,
                "weight_decay": 0.0,
                "ctc_weight_start": 1.0,
                "ctc_weight_end": 1.0,
                "specaug_start_step": a.steps + 1,
                "sorted_first_epoch": False,
                "checkpoint_every": a.steps,
                "log_every": max(1, a.steps // 5),
                "eval_every": a.steps,
                "eval_utterances": 0,
            },
            out_model=Path(tmp) / "model.pt",
            work_dir=Path(tmp) / "work",
            threads=a.threads,
            progress=False,
        )
        history = json.loads((Path(tmp) / "work/history.json").read_text())
    for row in history["train"]:
        print(f"step {row['step']:5d}  rnnt {row['rnnt_loss']:8.2f}  ctc {row['ctc_loss']:8.2f}")
    for row in history["dev"]:
        print(f"step {row['step']:5d}  greedy WER on the same utterances {row['wer']:.1f}%")


if __name__ == "__main__":
    main()
