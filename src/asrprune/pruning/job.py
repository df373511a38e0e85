"""A pruning job end to end: prune the teacher, compact, fine-tune, write model and summary.

Each phase resumes after a kill: pruning and fine-tuning from their trainer checkpoints,
and the compact model between them is a file written atomically (``pruned.pt``), so a job
killed during fine-tuning does not prune again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from asrprune.config import settings_from_dict
from asrprune.data.batching import UtteranceDataset
from asrprune.data.features import Cmvn
from asrprune.data.tokenizer import Tokenizer
from asrprune.distill import LayerwiseDistill
from asrprune.errors import AsrpruneError
from asrprune.evaluate import resolve_device
from asrprune.io import write_json
from asrprune.model import Transducer, load_model, save_model
from asrprune.model.conformer import ConformerEncoder
from asrprune.pruning.l0 import (
    FRAMES_PER_SECOND,
    L0Loss,
    L0Settings,
    Lagrangian,
    gated_student,
    method,
    param_groups,
)
from asrprune.tracking import log_artifact
from asrprune.train import TrainSettings, train

PRUNED = "pruned.pt"
Split = tuple[str | os.PathLike, str | os.PathLike]  # (manifest, feature store folder)


@dataclass
class JobData:
    """What every pruning job reads: the teacher, the data and its normalisation."""

    teacher: Transducer
    tokenizer: Tokenizer
    cmvn: Cmvn
    train: UtteranceDataset
    dev: UtteranceDataset

    @classmethod
    def load(cls, teacher_path: str | os.PathLike, splits: Mapping[str, Split]) -> JobData:
        """The teacher file (with its tokenizer and CMVN) and the train and dev splits."""
        teacher, tok_bytes, cmvn_state, _ = load_model(teacher_path)
        tokenizer = Tokenizer.from_bytes(tok_bytes, f"{teacher_path} (embedded tokenizer)")
        cmvn = Cmvn(cmvn_state["mean"], cmvn_state["std"], cmvn_state.get("frames", 0))
        train_data, dev = (UtteranceDataset(*splits[s], tokenizer, cmvn) for s in ("train", "dev"))
        return cls(teacher, tokenizer, cmvn, train_data, dev)


def run_splits(data_dir: str | os.PathLike) -> dict[str, Split]:
    """Train and dev (manifest, feature store) of a run's data/ folder."""
    data = Path(data_dir)
    return {s: (data / f"manifests/{s}.jsonl", data / f"features/{s}") for s in ("train", "dev")}


def final_masks(model: Transducer) -> dict[str, list[float]]:
    """Every gate's final mask by the module that owns it (JSON-safe)."""
    names = {id(m): n for n, m in model.named_modules()}
    out = {}
    for gate in model.encoder.gates():
        owner = names[id(gate)].removesuffix(".gate").removesuffix("_gate")
        out[owner] = [round(float(v), 6) for v in gate.final_mask()]
    return out


def finetune_and_save(
    compact: Transducer,
    data: JobData,
    settings: TrainSettings,
    work_dir: Path,
    out_model: str | os.PathLike,
    *,
    name: str,
    tags: Mapping[str, str],
    summary: dict,
    mlflow_ids: str | os.PathLike | None,
    threads: int | None,
    progress: bool,
) -> dict:
    """Fine-tune a compact model with the plain transducer loss and write the model file."""
    result = train(
        compact,
        data.train,
        data.dev,
        settings,
        work_dir / "finetune",
        mlflow_ids=mlflow_ids,
        run_name=f"{name}-finetune",
        tags={**tags, "stage": "finetune"},
        device=None,
        threads=threads,
        progress=progress,
    )
    summary = {**summary, "finetune_dev_wer": result.dev_wer, "finetune_steps": result.step}
    save_model(out_model, compact.cpu(), data.tokenizer.to_bytes(), data.cmvn.to_dict(), summary)
    return summary


def run_l0(
    *,
    teacher_path: str | os.PathLike,
    splits: Mapping[str, Split],
    method_name: str,
    sparsity: float,
    l0: Mapping[str, Any] | L0Settings,
    prune_settings: Mapping[str, Any] | TrainSettings,
    finetune_settings: Mapping[str, Any] | TrainSettings,
    out_model: str | os.PathLike,
    out_summary: str | os.PathLike,
    work_dir: str | os.PathLike,
    mlflow_ids: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
    """One L0 pruning job (``method_name`` at ``sparsity``): see the module docstring.

    ``splits``: "train" and "dev" as (manifest, feature store). Writes the fine-tuned
    compact model to ``out_model`` and to ``out_summary`` the final
    masks, the kept structure per block, the achieved sizes and the pruning history.
    """
    if not 0 < sparsity < 1:
        raise AsrpruneError(f"sparsity: expected a number in (0, 1), got {sparsity!r}")
    m = method(method_name)
    if not isinstance(l0, L0Settings):
        l0 = settings_from_dict(L0Settings, l0, "prune.l0")
    if not isinstance(prune_settings, TrainSettings):
        prune_settings = settings_from_dict(TrainSettings, prune_settings, "prune.train")
    if not isinstance(finetune_settings, TrainSettings):
        finetune_settings = settings_from_dict(TrainSettings, finetune_settings, "prune.finetune")
    if threads:
        torch.set_num_threads(threads)
    name = f"{method_name}-s{sparsity:g}"
    tags = {"method": method_name, "sparsity": f"{sparsity:g}", "budget": m.budget}
    work_dir = Path(work_dir)
    data = JobData.load(teacher_path, splits)
    reference_frames = round(l0.reference_seconds * FRAMES_PER_SECOND)
    pruned_path = work_dir / PRUNED

    if pruned_path.is_file():
        print(f"{pruned_path} exists: pruning is done, fine-tuning", file=sys.stderr)
        compact, _, _, record = load_model(pruned_path)
        compact.train()
    else:
        torch.manual_seed(prune_settings.seed)  # the gates' initial log-alphas
        student = gated_student(data.teacher, m.gates)
        teacher = data.teacher.eval().to(resolve_device(None))  # where the trainer runs
        for p in teacher.parameters():
            p.requires_grad_(False)
        distill = (
            LayerwiseDistill(len(teacher.encoder.blocks), teacher.config.d_model, l0.distill_map)
            if m.distill and l0.distill_weight > 0
            else None
        )
        lagrangian = Lagrangian()
        extra = {"lagrangian": lagrangian} | ({"distill": distill} if distill else {})
        loss_fn = L0Loss(teacher, distill, lagrangian, prune_settings, l0, m.budget, sparsity)
        result = train(
            student,
            data.train,
            data.dev,
            prune_settings,
            work_dir / "prune",
            loss_fn=loss_fn,
            extra_modules=extra,
            param_groups=param_groups(student, lagrangian, l0),
            mlflow_ids=mlflow_ids,
            run_name=name,
            tags={**tags, "stage": "prune"},
            params={"l0": asdict(l0), "method": asdict(m), "target_sparsity": sparsity},
            threads=threads,
            progress=progress,
        )
        student = student.cpu().eval()
        compact = Transducer.compacted(student)
        record = {
            "name": name,
            "method": method_name,
            "budget": m.budget,
            "target_sparsity": sparsity,
            "masks": final_masks(student),
            "structure": compact.structure.to_dict(),
            "prune_steps": result.step,
            "prune_dev_wer": result.dev_wer,
            "history": result.history,
            "mlflow_run_id": result.mlflow_run_id,
            **ConformerEncoder.size_report(compact.config, compact.structure, reference_frames),
        }
        save_model(pruned_path, compact, data.tokenizer.to_bytes(), data.cmvn.to_dict(), record)
        compact.train()
    summary = {k: v for k, v in record.items() if k != "history"}
    write_json(out_summary, record)
    if mlflow_ids and record.get("mlflow_run_id"):
        log_artifact(mlflow_ids, record["mlflow_run_id"], out_summary)
    print(
        f"{name}: kept structure removes {record['sparsity']:.1%} of block parameters and "
        f"{record['flops_sparsity']:.1%} of block FLOPs (target {sparsity:.0%} of {m.budget})",
        file=sys.stderr,
    )
    return finetune_and_save(
        compact,
        data,
        finetune_settings,
        work_dir,
        out_model,
        name=name,
        tags=tags,
        summary=summary,
        mlflow_ids=mlflow_ids,
        threads=threads,
        progress=progress,
    )
