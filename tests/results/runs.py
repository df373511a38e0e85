"""A fake run's result files, built from dicts: metrics JSONs, speed.csv, pruning summaries
and a tiny teacher model file, laid out as the workflow writes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from asrprune.io import write_json
from asrprune.model import BlockStructure, EncoderStructure, save_model
from asrprune.results.layout import L0_METHODS, model_name
from tests.model.tiny import tiny_config, tiny_model

TEACHER_RTF = 1.0
TEACHER_SIZE_MB = 10.0
REF = "the quick brown fox jumps over the lazy dog"  # 9 words
WRONG = "the quick brown cat jumps over the lazy dog"  # one substitution


def hyps_rows(n_wrong: int, n: int = 40, wrong: str = WRONG) -> list[dict]:
    """Hypotheses of ``n`` utterances of ``REF``, the first ``n_wrong`` of them ``wrong``."""
    return [{"id": f"u{i:03d}", "ref": REF, "hyp": wrong if i < n_wrong else REF} for i in range(n)]


def write_hyps(metrics: Path, name: str, split: str, rows: list[dict]) -> None:
    """``<metrics>/<name>.hyps/<split>.jsonl``, as rule evaluate saves hypotheses."""
    path = metrics / f"{name}.hyps" / f"{split}.jsonl"  # split "full/test-clean": a subfolder
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def structure_at(sparsity: float) -> EncoderStructure:
    """A tiny-config structure that keeps less the higher the target."""
    c = tiny_config()
    keep, d = 1.0 - sparsity, c.d_model - 2  # global hidden pruning drops two dimensions
    hidden = tuple(range(0, d, 2)) if sparsity >= 0.5 else None
    blocks = (
        BlockStructure(heads=0, ffn1=int(64 * keep), ffn2=64, conv=True, hidden=hidden),
        BlockStructure(heads=2, ffn1=64, ffn2=int(64 * keep), conv=sparsity < 0.5),
    )
    return EncoderStructure(d_model=d, blocks=blocks)


def metrics(wer_clean, wer_other, size_mb, sparsity, structure) -> dict:
    """Greedy WERs as given; the teacher and 50% models also have the full decoding, one
    point better."""
    wer = {"dev": wer_clean, "test-clean": wer_clean, "test-other": wer_other}
    out = {
        "wer": wer,
        "decoding": {"method": "greedy", "beam": 1, "lm": None},
        "size_mb": size_mb,
        "sparsity": sparsity,
        "flops_sparsity": sparsity * 0.9,
        "structure": structure.to_dict(),
    }
    if sparsity in (0.0, 0.5):
        decoding = {"method": "beam", "beam": 8, "lm": {"order": 6, "weight": 0.15}}
        out["full"] = {"decoding": decoding, "wer": {k: v - 1.0 for k, v in wer.items()}}
    return out


def history(sparsity: float, steps: int = 6) -> dict:
    rows = [
        {
            "step": s,
            "loss": 1.0,
            "expected_kept": 1.0 - sparsity * s / steps * 0.9,
            "target_kept": 1.0 - sparsity * min(1.0, 2 * s / steps),
        }
        for s in range(1, steps + 1)
    ]
    return {"train": rows, "dev": [{"step": steps, "wer": 50.0}]}


def write_run(root: Path, methods, sparsities, rtf=None) -> Path:
    """Result files for the teacher and every (method, sparsity) under ``root``.

    Model k (in the order written) has RTF ``rtf[name]`` (default 0.9 * 0.97^k), size
    ``TEACHER_SIZE_MB * (1 - sparsity)``, WER 10 + k / 20 + k in its metrics, and saved
    test hypotheses with k wrong utterances of 40 (the teacher none); at 50% also the full
    decoding's, with k // 2 wrong.
    """
    rtf = dict(rtf or {})
    full = EncoderStructure.full(tiny_config())
    write_json(root / "metrics/teacher.json", metrics(10.0, 20.0, TEACHER_SIZE_MB, 0.0, full))
    speed = [{"model": "teacher", "rtf_median": rtf.get("teacher", TEACHER_RTF)}]
    for split in ("test-clean", "test-other"):
        write_hyps(root / "metrics", "teacher", split, hyps_rows(0))
    for k, (method, s) in enumerate(((m, s) for s in sparsities for m in methods), start=1):
        name = model_name(method, s)
        write_json(
            root / f"metrics/{name}.json",
            metrics(10.0 + k, 20.0 + k, TEACHER_SIZE_MB * (1 - s), s, structure_at(s)),
        )
        speed.append({"model": name, "rtf_median": rtf.get(name, 0.9 * 0.97**k)})
        for split in ("test-clean", "test-other"):
            write_hyps(root / "metrics", name, split, hyps_rows(k))
            if s == 0.5:
                write_hyps(root / "metrics", name, f"full/{split}", hyps_rows(k // 2))
        summary = {"name": name, "structure": structure_at(s).to_dict()}
        if method in L0_METHODS:
            summary["history"] = history(s)
        write_json(root / f"pruning/{name}.json", summary)
    with open(root / "speed.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["model", "rtf_median", "rtf_ratio"])
        writer.writeheader()
        for row in speed:
            writer.writerow({**row, "rtf_ratio": row["rtf_median"] / speed[0]["rtf_median"]})
    model = tiny_model()
    cmvn = {"mean": torch.zeros(80), "std": torch.ones(80)}
    save_model(root / "models/teacher.pt", model, b"tokenizer", cmvn)
    return root
