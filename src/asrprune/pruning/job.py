"""A pruning job end to end: prune the teacher, compact, fine-tune, write model and summary.

Each phase resumes after a kill: pruning and fine-tuning from their trainer checkpoints,
and the compact model between them is a file written atomically (``pruned.pt``), so a job
killed during fine-tuning does not prune again.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from asrprune.config import settings_from_dict
from asrprune.data.batching import UtteranceDataset
from asrprune.data.features import Cmvn
from asrprune.data.tokenizer import Tokenizer
from asrprune.errors import AsrpruneError
from asrprune.io import write_json
from asrprune.model import ConformerEncoder, LatencyModel, Transducer, load_model, save_model
from asrprune.model_file import open_model_file
from asrprune.pruning.l0 import (
    FRAMES_PER_SECOND,
    METHODS,
    GateKinds,
    L0Settings,
    gated_student,
    hold_target,
    l0_setup,
    method,
)
from asrprune.pruning.magnitude import OmpSettings, ParpLoss, ParpSettings, prune_by_magnitude
from asrprune.pruning.settings import check_method_settings, settings_read
from asrprune.pruning.svd import prune_svd
from asrprune.tracking import log_artifact
from asrprune.train import TrainSettings, TransducerLoss, train
from asrprune.workdir import claim_work_dir, file_digests, split_files

PRUNED = "pruned.pt"
# Every method a job can run: ours and its ablations (pruning.l0), then the baselines;
# pruning.settings.READS says what each reads of config prune.
PRUNE_METHODS = (*METHODS, "omp", "parp", "svd")
Split = tuple[str | os.PathLike, str | os.PathLike]  # (manifest, feature store folder)
# The settings class of each section of config prune that a job may read.
SECTIONS = {
    "l0": L0Settings,
    "omp": OmpSettings,
    "parp": ParpSettings,
    "train": TrainSettings,
    "finetune": TrainSettings,
}


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
        f = open_model_file(teacher_path)
        data = {s: UtteranceDataset(*splits[s], f.tokenizer, f.cmvn) for s in ("train", "dev")}
        return cls(f.model, f.tokenizer, f.cmvn, data["train"], data["dev"])


def run_splits(data_dir: str | os.PathLike) -> dict[str, Split]:
    """Train and dev (manifest, feature store) of a run's data/ folder."""
    data = Path(data_dir)
    return {s: (data / f"manifests/{s}.jsonl", data / f"features/{s}") for s in ("train", "dev")}


def latency_kept(compact: Transducer, teacher: Transducer, latency: LatencyModel) -> float:
    """The compact encoder's time over the teacher's, by the latency model."""
    predict = ConformerEncoder.count_latency
    return predict(compact.structure, latency) / predict(teacher.encoder.structure, latency)


def final_masks(model: Transducer) -> dict[str, list[float]]:
    """Every gate's final mask by the module that owns it (JSON-safe)."""
    names = {id(m): n for n, m in model.named_modules()}
    out = {}
    for gate in model.encoder.gates():
        owner = names[id(gate)].removesuffix(".gate").removesuffix("_gate")
        out[owner] = [round(float(v), 6) for v in gate.final_mask()]
    return out


@dataclass
class _Job:
    """What every phase of one job shares: data, work folder, names, tracking, threads."""

    data: JobData
    work_dir: Path
    name: str
    tags: dict[str, str]
    mlflow_ids: str | os.PathLike | None
    threads: int | None
    progress: bool

    def train(self, model: Transducer, settings: TrainSettings, stage: str, **options):
        """Train ``model`` in ``work_dir/<stage>`` as an MLflow child run tagged ``stage``."""
        return train(
            model,
            self.data.train,
            self.data.dev,
            settings,
            self.work_dir / stage,
            mlflow_ids=self.mlflow_ids,
            run_name=self.name if stage == "prune" else f"{self.name}-{stage}",
            tags={**self.tags, "stage": stage},
            threads=self.threads,
            progress=self.progress,
            **options,
        )


def _trained(student: Transducer, result) -> dict:
    """What the summary keeps of a pruning phase that trained: masks and history."""
    return {
        "masks": final_masks(student),
        "prune_steps": result.step,
        "prune_dev_wer": result.dev_wer,
        "history": result.history,
        "mlflow_run_id": result.mlflow_run_id,
    }


def _prune_l0(
    job: _Job,
    method_name: str,
    sparsity: float,
    l0: L0Settings,
    settings: TrainSettings,
    latency: LatencyModel | None = None,
) -> tuple[Transducer, dict]:
    """Our method's pruning phase: learn the gates, then compact. Returns the compact
    model and what the summary records of this phase."""
    setup = l0_setup(job.data.teacher, method_name, sparsity, l0, settings, latency=latency)
    result = job.train(
        setup.student,
        settings,
        "prune",
        loss_fn=setup.loss,
        extra_modules=setup.extra_modules,
        param_groups=setup.param_groups,
        params={
            "l0": settings_read(method_name)["l0"].select(asdict(l0)),
            "method": asdict(method(method_name)),
            "target_sparsity": sparsity,
        },
    )
    student = setup.student.cpu().eval()
    budget = setup.loss.budget
    hold = hold_target(student, budget, 1 - sparsity, setup.loss.reference_frames, latency)
    if not hold["fits"]:
        print(
            f"{job.name}: warning: no structure the gates can leave is within the target "
            f"{1 - sparsity:.3f} of the {budget}; the final masks keep {hold['kept']:.3f}",
            file=sys.stderr,
        )
    elif hold["shift"] != 0:
        side, moved = (
            ("over", "the least sure units dropped")
            if hold["shift"] > 0
            else ("under", "the least sure dropped units taken back")
        )
        print(
            f"{job.name}: the final masks kept {hold['kept_before']:.3f} of the {budget}, "
            f"{side} the target {1 - sparsity:.3f}: {moved} "
            f"(log-alpha shift {hold['shift']:.3f}) to {hold['kept']:.3f}",
            file=sys.stderr,
        )
    return Transducer.compacted(student), {**_trained(student, result), "hold": hold}


def _prune_omp(job: _Job, sparsity: float, omp: OmpSettings) -> tuple[Transducer, dict]:
    """One-shot magnitude pruning of the teacher to the parameter target, then compact."""
    student = gated_student(job.data.teacher, GateKinds()).eval()
    choice = prune_by_magnitude(student, sparsity, ranking=omp.ranking)
    record = {"masks": final_masks(student), "removed_units": choice.removed, "prune_steps": 0}
    return Transducer.compacted(student), record


def _prune_parp(
    job: _Job, sparsity: float, omp: OmpSettings, parp: ParpSettings, settings: TrainSettings
) -> tuple[Transducer, dict]:
    """PARP on our units: start from the OMP mask, train with pruned units zeroed but
    regrowing and re-pruned by magnitude every ``parp.reprune_every`` steps, re-prune a
    last time and compact."""
    student = gated_student(job.data.teacher, GateKinds())
    loss_fn = ParpLoss(TransducerLoss(settings), sparsity, parp.reprune_every, omp.ranking)
    loss_fn.start(student)  # the OMP mask (a resumed job then loads its own state)
    result = job.train(
        student,
        settings,
        "prune",
        loss_fn=loss_fn,
        params={"omp": asdict(omp), "parp": asdict(parp), "target_sparsity": sparsity},
    )
    student = student.cpu().eval()
    choice = loss_fn.prune(student)
    return Transducer.compacted(student), {
        **_trained(student, result),
        "removed_units": choice.removed,
    }


def _prune_svd(job: _Job, sparsity: float) -> tuple[Transducer, dict]:
    """Every Linear layer of the teacher's blocks factored by SVD to meet the target."""
    model = copy.deepcopy(job.data.teacher)
    choice = prune_svd(model, sparsity)
    return model, {"rank_keep": choice.keep, "ranks": choice.ranks, "prune_steps": 0}


def run_prune(
    *,
    teacher_path: str | os.PathLike,
    splits: Mapping[str, Split],
    method_name: str,
    sparsity: float,
    settings: Mapping[str, Any] | str,
    out_model: str | os.PathLike,
    out_summary: str | os.PathLike,
    work_dir: str | os.PathLike,
    mlflow_ids: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: bool = True,
    latency_table: str | os.PathLike | None = None,
) -> dict:
    """One pruning job (``method_name`` at ``sparsity``): prune the teacher, compact,
    fine-tune.

    Our L0 methods (``l0-*``) learn their masks over ``prune_settings.max_steps`` steps and
    then fine-tune for ``finetune_settings.max_steps``; ``parp`` adjusts its masks over
    the first budget, then fine-tunes; ``omp`` and ``svd`` prune in one shot and fine-tune
    for both budgets together, so every method trains for the same number of
    steps. ``settings``: the method's part of config prune and nothing else
    (pruning.settings.method_settings), section name to mapping, or all of it as JSON;
    ``prune_settings`` and ``finetune_settings`` below are its ``train`` and ``finetune``.
    ``splits``: "train" and "dev" as (manifest, feature store). Writes the fine-tuned
    compact model to ``out_model`` and to ``out_summary`` the final masks, the kept
    structure per block, the achieved sizes and the pruning history. ``latency_table``:
    the latency model's table (asrprune latency-table), which ``l0-latency`` needs; with
    it the summary also has ``latency_kept``, the compact encoder's modelled time over the
    teacher's.
    """
    if not 0 < sparsity < 1:
        raise AsrpruneError(f"sparsity: expected a number in (0, 1), got {sparsity!r}")
    # A section read in part (the baselines' l0 and train) leaves the keys its method does
    # not read at their defaults.
    typed = {
        name: settings_from_dict(SECTIONS[name], values, f"prune.{name}")
        for name, values in check_method_settings(method_name, settings).items()
    }
    l0, prune_settings, finetune_settings = typed["l0"], typed["train"], typed["finetune"]
    omp, parp = typed.get("omp"), typed.get("parp")
    read = {
        name: keys.select(asdict(typed[name])) for name, keys in settings_read(method_name).items()
    }
    if threads:
        torch.set_num_threads(threads)
    budget = METHODS[method_name].budget if method_name in METHODS else "params"
    latency = None if latency_table is None else LatencyModel.load(latency_table)
    if budget == "latency" and latency is None:
        raise AsrpruneError(f"{method_name}: give the latency table (--latency-table)")
    inputs = {"teacher": teacher_path, **split_files(splits)}
    if latency_table is not None:
        inputs["latency_table"] = latency_table
    name = Path(out_model).stem  # the workflow's model name, replicates told apart
    tags = {"method": method_name, "sparsity": f"{sparsity:g}", "budget": budget}
    claim_work_dir(
        work_dir,
        {
            "job": "prune",
            "method": method_name,
            "sparsity": sparsity,
            **read,
            "inputs": file_digests(inputs),
        },
    )
    data = JobData.load(teacher_path, splits)
    job = _Job(data, Path(work_dir), name, tags, mlflow_ids, threads, progress)
    reference_frames = round(l0.reference_seconds * FRAMES_PER_SECOND)
    pruned_path = job.work_dir / PRUNED

    if pruned_path.is_file():
        print(f"{pruned_path} exists: pruning is done, fine-tuning", file=sys.stderr)
        saved = load_model(pruned_path)
        compact, record = saved.model, saved.extra
    else:
        if method_name in METHODS:
            compact, phase = _prune_l0(job, method_name, sparsity, l0, prune_settings, latency)
        elif method_name == "parp":
            compact, phase = _prune_parp(job, sparsity, omp, parp, prune_settings)
        elif method_name == "svd":
            compact, phase = _prune_svd(job, sparsity)
        else:
            compact, phase = _prune_omp(job, sparsity, omp)
        record = {
            "name": name,
            "method": method_name,
            "budget": budget,
            "target_sparsity": sparsity,
            **phase,
            "structure": compact.structure.to_dict(),
            **compact.size_report(reference_frames),
        }
        if latency is not None:
            record["latency_kept"] = latency_kept(compact, data.teacher, latency)
        save_model(pruned_path, compact, data.tokenizer.to_bytes(), data.cmvn.to_dict(), record)
    compact.train()
    if method_name in ("omp", "svd"):  # no training while pruning: its steps fine-tune
        steps = prune_settings.max_steps + finetune_settings.max_steps
        finetune_settings = replace(finetune_settings, max_steps=steps)
    summary = {k: v for k, v in record.items() if k != "history"}
    write_json(out_summary, record)
    if mlflow_ids and record.get("mlflow_run_id"):
        log_artifact(mlflow_ids, record["mlflow_run_id"], out_summary)
    removed = (
        f"{record['sparsity']:.1%} of block parameters, {record['flops_sparsity']:.1%} of block "
        "FLOPs"
    )
    if "latency_kept" in record:
        removed += f", {1 - record['latency_kept']:.1%} of the encoder's modelled time"
    print(
        f"{name}: kept structure removes {removed} (target {sparsity:.0%} of {budget})",
        file=sys.stderr,
    )
    result = job.train(compact, finetune_settings, "finetune")
    summary = {**summary, "finetune_dev_wer": result.dev_wer, "finetune_steps": result.step}
    save_model(out_model, compact.cpu(), data.tokenizer.to_bytes(), data.cmvn.to_dict(), summary)
    return summary
