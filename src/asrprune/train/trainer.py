"""The trainer: one loop for the teacher now, and for L0 pruning and fine-tuning later.

AdamW with linear warm-up then cosine decay, gradient clipping, SpecAugment after a start
step, frame-budget length-bucketed batches, and a pluggable loss (by default
:class:`~asrprune.train.loss.TransducerLoss`).

Resumable exactly: a checkpoint holds the weights of the model and of any extra modules,
the optimiser, the scheduler, where the data order stands (epoch, batches consumed), the
step, every random generator (torch, CUDA, numpy, Python, SpecAugment's) and the history.
A job killed at any moment and started again with the same ``out_dir`` continues from its
last checkpoint and ends with the same weights as a job never interrupted.

Data parallel under ``torchrun`` (``asrprune.distributed``): each process trains on its
share of every global batch (``DurationBucketSampler``), the model is wrapped in
DistributedDataParallel, and the gradients of the extra modules (distillation maps,
Lagrange multipliers) are averaged over the ranks by hand, so every rank takes the same
optimiser step. Each rank's loss is weighted by its share of the batch's utterances, so
terms averaged per utterance (RNN-T, CTC) and terms that do not depend on the data (the
Lagrangian) equal one process's on the whole batch; per-frame terms (distillation) are
weighted by utterances rather than frames. Rank 0 alone shows progress, evaluates dev,
logs to MLflow and writes checkpoints (with every rank's random state); every rank
resumes from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from asrprune import distributed
from asrprune.data.batching import (
    Batch,
    DurationBucketSampler,
    SpecAugment,
    UtteranceDataset,
    VocalTractWarp,
    collate,
    length_batches,
)
from asrprune.device import has_native_bf16, resolve_device
from asrprune.errors import AsrpruneError
from asrprune.evaluate import word_errors
from asrprune.io import atomic_path, write_json
from asrprune.model import Transducer
from asrprune.model.decoding import search
from asrprune.model.pruned_rnnt import SimpleJoiner
from asrprune.train.loss import LossFn, TransducerLoss
from asrprune.train.settings import TrainSettings
from asrprune.train.state import rng_state, seed_everything, set_rng_state
from asrprune.train.tracking import tracked_run

CHECKPOINT_FORMAT = "asrprune-train-state"
CHECKPOINT_VERSION = 1
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
ADAM_BETAS = (0.9, 0.98)  # the Conformer / ESPnet recipe
ADAM_EPS = 1e-9


@dataclass
class TrainResult:
    step: int  # optimiser updates done
    epoch: int  # current epoch (0-based)
    history: dict  # {"train": [row per log interval], "dev": [row per evaluation]}
    dev_wer: float | None  # the last dev WER point, percent, if any
    checkpoint: Path  # the last checkpoint written
    resumed_from: int | None  # the step resumed from, None for a fresh start
    mlflow_run_id: str | None = None


@dataclass
class _Interval:
    """Per-step metrics summed over the current log interval."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0

    def add(self, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {k: v / self.steps for k, v in self.sums.items()}


class _DataParallel(nn.parallel.DistributedDataParallel):
    """DDP that lends the wrapped model's attributes (``encoder``, ``config``) to a loss
    function, which then works on one process and under torchrun alike."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # not wrapped yet (DDP's own __init__ looks things up)
                raise
            return getattr(self.module, name)


class Trainer:
    """Owns the model, optimiser, scheduler, data order and random state of one training job.

    Args:
        model: the transducer to train (moved to ``device``).
        train_data / dev_data: datasets with CMVN applied; dev may be None (no evaluation).
        settings: :class:`TrainSettings`.
        out_dir: where ``checkpoint.pt`` and ``history.json`` live; an existing checkpoint
            there is resumed by :meth:`run`.
        loss_fn: ``(model, batch, step) -> (loss, {name: float})``; default
            :class:`TransducerLoss`. The batch is on the device, SpecAugment applied.
        extra_modules: more trainable modules (e.g. gates, distillation maps), by name;
            moved to the device, switched between train/eval with the model, optimised
            and checkpointed.
        param_groups: AdamW groups with their own options (``lr``, ``weight_decay``,
            ``maximize``, and ``scheduled``: False for a constant lr instead of the warm-up
            and cosine schedule). Their parameters must belong to ``model`` or
            ``extra_modules`` (so they are checkpointed); every other trainable parameter
            goes to the default groups (weight decay on matrices only).
        device: None picks CUDA when available (under torchrun: this rank's GPU).
        threads: torch intra-op threads (per process).
    Gradient clipping covers the model's weights only: the parameters of ``model`` outside
    ``param_groups``. The custom groups (gates, Lagrange multipliers) and the extra modules
    (distillation maps) are neither clipped nor counted in the clipped norm, so a strong
    constraint gradient on the gates cannot shrink the weights' update (as CoFiPruning
    clips). Under torchrun (WORLD_SIZE > 1) the trainer joins the process group and trains
    data parallel; see the module.
    """

    def __init__(
        self,
        model: Transducer,
        train_data: UtteranceDataset,
        dev_data: UtteranceDataset | None,
        settings: TrainSettings,
        out_dir: str | os.PathLike,
        *,
        loss_fn: LossFn | None = None,
        extra_modules: Mapping[str, nn.Module] | None = None,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        device: str | torch.device | None = None,
        threads: int | None = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.settings = s = settings
        self.out_dir = Path(out_dir)
        self.world = distributed.init()
        if device is None and self.world.distributed:
            device = distributed.device(self.world)
        self.device = resolve_device(device)
        self.amp = s.bf16 and has_native_bf16(self.device)
        if s.bf16 and not self.amp:
            # e.g. a V100, or a CPU without AVX512-BF16 or AMX: fp16 would need loss scaling
            print(f"note: no native bf16 on {self.device}; training in fp32", file=sys.stderr)
        self.model = model.to(self.device)
        extra_modules = dict(extra_modules or {})
        if s.rnnt_band:
            if loss_fn is not None:
                raise AsrpruneError(
                    "train.rnnt_band (the pruned RNN-T loss) trains with the default loss "
                    "only (the teacher's); set it to 0 for this job"
                )
            c = model.config
            extra_modules["simple_joiner"] = SimpleJoiner(
                model.structure.d_model, c.predictor_dim, c.vocab_size
            )
        self.extra_modules = {k: m.to(self.device) for k, m in extra_modules.items()}
        if loss_fn is None:
            loss_fn = TransducerLoss(s, self.extra_modules.get("simple_joiner"))
        self.loss_fn = loss_fn
        self.train_data, self.dev_data = train_data, dev_data
        seed_everything(s.seed)

        self.sampler = DurationBucketSampler(
            train_data.lengths,
            s.max_frames,
            ids=[u.id for u in train_data.utts],
            shuffle=True,
            seed=s.seed,
            sorted_first_epoch=s.sorted_first_epoch,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        if self.sampler.oversized and self.world.main:
            print(
                f"note: {len(self.sampler.oversized)} training utterances are longer than "
                f"max_frames={s.max_frames} and get a batch each (the longest: "
                f"{max(train_data.lengths)} frames)",
                file=sys.stderr,
            )
        # A DataLoader draws its workers' base seed from a generator each time it is
        # iterated; its own generator keeps that draw out of the global stream that dropout
        # uses, so a resumed job (which starts mid-epoch) replays dropout exactly.
        self.loader = DataLoader(
            train_data,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=s.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(s.seed),
        )
        self.specaug = SpecAugment(
            s.specaug_freq_masks,
            s.specaug_freq_width,
            s.specaug_time_masks,
            s.specaug_time_width_ratio,
        )
        self.vtlp = VocalTractWarp(s.vtlp_range)
        # one stream for both augmentations: with VTLP off, SpecAugment draws as before
        self.specaug_generator = torch.Generator().manual_seed(s.seed + 1)

        custom = [{**g, "params": list(g["params"])} for g in param_groups or []]
        groups = self._param_groups(custom)
        self.optimizer = torch.optim.AdamW(
            groups, lr=s.peak_lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=s.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            [s.lr_factor if g.get("scheduled", True) else (lambda _: 1.0) for g in groups],
        )
        grouped = {id(p) for g in custom for p in g["params"]}
        self.clipped = [
            p for p in self.model.parameters() if p.requires_grad and id(p) not in grouped
        ]
        # what the forward runs through: the model, or its DDP wrapper under torchrun
        self.net: nn.Module = self.model
        if self.world.distributed:
            self.net = _DataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # the CTC head at weight 0 and pinned gates get no gradient in some steps
                find_unused_parameters=True,
            )
        # DDP averages the model's gradients; these are averaged by hand
        self.extra_params = [
            p for m in self.extra_modules.values() for p in m.parameters() if p.requires_grad
        ]
        self.extra_buffers = [b for m in self.extra_modules.values() for b in m.buffers()]

        self.step = 0
        self.epoch = 0
        self.position = 0  # batches of this epoch consumed by the training loop
        self.history: dict[str, list[dict]] = {"train": [], "dev": []}
        self.interval = _Interval()
        self.mlflow_run_id: str | None = None
        self.resumed_from: int | None = None
        self.dev_indices = self._dev_subset()

    # -- set-up ---------------------------------------------------------------

    def _modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, **{f"extra.{k}": m for k, m in self.extra_modules.items()}}

    def _param_groups(self, custom: Sequence[Mapping[str, Any]]) -> list[dict]:
        named = {
            id(p): (f"{prefix}.{n}", p)
            for prefix, module in self._modules().items()
            for n, p in module.named_parameters()
        }
        taken: set[int] = set()
        groups = []
        for i, group in enumerate(custom):
            params = list(group["params"])
            for p in params:
                if id(p) not in named:
                    raise AsrpruneError(
                        f"param_groups[{i}] holds a parameter that is neither in the model nor "
                        "in extra_modules, so it would not be checkpointed; wrap it in a module "
                        "(e.g. nn.ParameterDict) and pass it in extra_modules"
                    )
                if id(p) in taken:
                    raise AsrpruneError(f"param_groups[{i}] repeats a parameter of another group")
                taken.add(id(p))
            groups.append({**group, "params": params})
        rest = [p for pid, (_, p) in named.items() if pid not in taken and p.requires_grad]
        # weight decay on matrices and embeddings; not on biases, norms, per-head biases
        decay = [p for p in rest if p.dim() >= 2]
        no_decay = [p for p in rest if p.dim() < 2]
        default = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        return [g for g in default if g["params"]] + groups

    def _dev_subset(self) -> list[int]:
        if self.dev_data is None or self.settings.eval_every == 0:
            return []
        n, want = len(self.dev_data), self.settings.eval_utterances
        if want == 0 or want >= n:
            return list(range(n))
        return sorted({round(i * n / want) for i in range(want)})  # evenly spaced, fixed

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    # -- checkpoints ----------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "data": {**self.sampler.state_dict(), "epoch": self.epoch, "position": self.position},
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "model_config": self.model.config.to_dict(),
            "structure": self.model.structure.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(self.specaug_generator),
            "rng_ranks": [],  # under torchrun: every rank's, filled by save_checkpoint
            "history": self.history,
            "interval": {"sums": dict(self.interval.sums), "steps": self.interval.steps},
            "settings": self.settings.to_dict(),
            "mlflow_run_id": self.mlflow_run_id,
        }

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
            raise AsrpruneError(f"{source} is not an asrprune training checkpoint (version 1)")
        for key, mine in (
            ("model_config", self.model.config.to_dict()),
            ("structure", self.model.structure.to_dict()),
        ):
            if state[key] != mine:
                raise AsrpruneError(
                    f"{source} was written for another model ({key} differs); "
                    f"delete {self.out_dir} to start this training over"
                )
        if set(state["modules"]) != set(self._modules()):
            raise AsrpruneError(
                f"{source} holds modules {sorted(state['modules'])}, this job has "
                f"{sorted(self._modules())}"
            )
        changed = {
            k: (v, getattr(self.settings, k, None))
            for k, v in state["settings"].items()
            if getattr(self.settings, k, None) != v
        }
        if changed:
            lines = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            print(f"note: resuming with changed settings ({lines})", file=sys.stderr)
        for k, module in self._modules().items():
            try:
                module.load_state_dict(state["modules"][k], strict=True)
            except RuntimeError as e:
                raise AsrpruneError(f"{source}: weights of {k} do not fit: {e}") from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as e:  # other parameter groups or sizes
            raise AsrpruneError(f"{source}: optimiser state does not fit this job: {e}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["data"])  # refuses other data, budget or seed
        self.step, self.epoch = int(state["step"]), int(state["data"]["epoch"])
        self.position = int(state["data"]["position"])
        self.history = state["history"]
        self.interval = _Interval(dict(state["interval"]["sums"]), int(state["interval"]["steps"]))
        self.mlflow_run_id = state.get("mlflow_run_id")
        ranks = state.get("rng_ranks") or []
        if self.world.distributed and len(ranks) == self.world.size:
            set_rng_state(ranks[self.world.rank], self.specaug_generator)
        else:
            set_rng_state(state["rng"], self.specaug_generator)

    def save_checkpoint(self) -> None:
        """Write the checkpoint and the history, each atomically (a kill leaves the old ones).

        Under torchrun every rank calls it (their random states are gathered) and rank 0
        writes.
        """
        state = self.state_dict()
        if self.world.distributed:
            state["rng_ranks"] = distributed.gather_objects(state["rng"])
        if not self.world.main:
            return
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)
        write_json(self.out_dir / HISTORY, self.history)

    def resume(self) -> bool:
        """Load ``out_dir``'s checkpoint if there is one; True if it did."""
        # leftovers of a save killed mid-write (atomic_path cleans up only on exceptions)
        for tmp in self.out_dir.glob(f".{CHECKPOINT}.*.tmp") if self.world.main else ():
            tmp.unlink(missing_ok=True)
        path = self.checkpoint_path
        if not path.is_file():
            return False
        try:
            # on the CPU: random states must be CPU tensors; weights and optimiser state
            # are copied to their parameters' device as they load
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or foreign files raise many types
            raise AsrpruneError(
                f"cannot read checkpoint {path}: {e}; delete it to start over"
            ) from None
        self.load_state_dict(state, str(path))
        self.resumed_from = self.step
        return True

    # -- one step -------------------------------------------------------------

    def _set_mode(self, training: bool) -> None:
        for module in self._modules().values():
            module.train(training)

    def _autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimiser update on ``batch`` (on the CPU, as collated); returns its metrics."""
        step = self.step + 1
        if self.settings.specaug_on(step):
            self.vtlp.train()
            self.specaug.train()
            g = self.specaug_generator
            feats = self.vtlp(batch.feats, batch.feat_lens, generator=g)
            feats = self.specaug(feats, batch.feat_lens, generator=g)
            batch = dataclasses.replace(batch, feats=feats)
        batch = batch.to(self.device, non_blocking=True)
        self._set_mode(True)
        with self._autocast():
            loss, metrics = self.loss_fn(self.net, batch, step)
        if self.world.distributed:
            value, metrics, weight = self._global_metrics(loss, metrics, len(batch))
            loss = loss * weight
        else:
            value = float(loss.detach())
        if not math.isfinite(value):  # the batch's loss: every rank stops at once
            raise AsrpruneError(
                f"training loss is {value} at step {step} (epoch {self.epoch}); "
                f"utterances in the batch{' on this rank' if self.world.distributed else ''}: "
                f"{', '.join(batch.ids)}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world.distributed:
            distributed.average_gradients(self.extra_params, self.world.size)
        clip = self.settings.grad_clip if self.settings.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.clipped, clip))
        if not math.isfinite(grad_norm):
            raise AsrpruneError(
                f"gradient norm is {grad_norm} at step {step} (epoch {self.epoch}), loss "
                f"{value:.4g}; utterances in the batch: {', '.join(batch.ids)}"
            )
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if self.world.distributed:
            # buffers a loss updates itself (the multipliers' SGD ascent) are computed from
            # the same values on every rank; rank 0's copy rules out any drift
            distributed.broadcast_tensors(self.extra_buffers)
        self.step = step
        return {"loss": value, **metrics, "grad_norm": grad_norm, "lr": lr}

    def _global_metrics(
        self, loss: torch.Tensor, metrics: Mapping[str, float], n: int
    ) -> tuple[float, dict[str, float], float]:
        """The loss and metrics of the whole global batch, and this rank's loss weight.

        One collective sums (n, n * loss, n * metric...) over the ranks: N utterances in
        all, and each value's utterance-weighted mean, which for a per-utterance mean is
        exactly one process's value on the whole batch. DDP averages gradients over the
        ranks, so weighting this rank's loss by size * n / N makes the averaged gradient
        that of the utterance-weighted sum too.
        """
        keys = sorted(metrics)
        values = [float(loss.detach()), *(float(metrics[k]) for k in keys)]
        sums = torch.tensor([1.0, *values], dtype=torch.float64, device=self.device) * n
        sums = distributed.all_reduce_sum(sums).cpu()  # (2 + len(keys),)
        total = float(sums[0])
        means = (sums[1:] / total).tolist()
        return means[0], dict(zip(keys, means[1:], strict=True)), self.world.size * n / total

    # -- dev evaluation -------------------------------------------------------

    @torch.no_grad()
    def evaluate_dev(self) -> dict[str, float]:
        """Greedy WER (percent) and losses on the fixed dev subset, in eval mode."""
        data = self.dev_data
        assert data is not None
        self._set_mode(False)
        refs, hyps = [], []
        loss_sums: dict[str, float] = {}
        try:
            lengths = [data.lengths[i] for i in self.dev_indices]
            for positions in length_batches(lengths, self.settings.max_frames):
                idx = [self.dev_indices[p] for p in positions]
                batch = collate([data[i] for i in idx]).to(self.device)
                with self._autocast():
                    out = self.model(batch.feats, batch.feat_lens, batch.tokens, batch.token_lens)
                    tokens = search(self.model, out.encoder_out, out.encoder_lens)
                losses = {"rnnt_loss": out.rnnt_loss, "ctc_loss": out.ctc_loss}
                for k, v in losses.items():
                    if v is not None:
                        loss_sums[k] = loss_sums.get(k, 0.0) + float(v) * len(idx)
                refs += [data.utts[i].text for i in idx]
                hyps += [data.tokenizer.decode(t) for t in tokens]
        finally:
            self._set_mode(True)
        errors = word_errors(refs, hyps)
        return {
            "step": self.step,
            "wer": errors.wer,
            **{k: v / len(refs) for k, v in loss_sums.items()},
            "utterances": len(refs),
        }

    # -- the loop -------------------------------------------------------------

    def _batches(self) -> Iterator[Batch]:
        """Batches from where the data order stands, epoch after epoch, forever."""
        while True:
            self.sampler.load_state_dict({"epoch": self.epoch, "position": self.position})
            for batch in self.loader:
                self.position += 1
                yield batch
            self.epoch += 1
            self.position = 0

    def _log_interval(self, tracker, started: float, steps: int, bar) -> None:
        row = {"step": self.step, "epoch": self.epoch, **self.interval.means()}
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        elapsed = time.perf_counter() - started
        row["steps_per_s"] = steps / elapsed if elapsed > 0 else 0.0
        self.history["train"].append(row)
        self.interval = _Interval()
        bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}", refresh=False)
        if tracker is not None:
            metrics = {f"train.{k}": v for k, v in row.items() if k not in ("step",)}
            tracker.log_metrics(metrics, step=self.step)

    def _log_dev(self, tracker, bar) -> None:
        point = self.evaluate_dev()
        self.history["dev"].append(point)
        bar.write(
            f"step {self.step}: dev WER {point['wer']:.2f}% on {point['utterances']} utterances",
            file=sys.stderr,
        )
        if tracker is not None:
            metrics = {f"dev.{k}": v for k, v in point.items() if k != "step"}
            tracker.log_metrics(metrics, step=self.step)

    def run(
        self,
        *,
        mlflow_ids: str | os.PathLike | None = None,
        run_name: str = "train",
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Resume from ``out_dir`` if possible, train to ``max_steps``, checkpoint; see module."""
        s = self.settings
        main = self.world.main
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.resume() and main:
            print(f"resuming {self.checkpoint_path} at step {self.step}", file=sys.stderr)
        all_params = {
            "train": s.to_dict(),
            "model": self.model.config.to_dict(),
            "world_size": self.world.size,
            **dict(params or {}),
        }
        ids = mlflow_ids if main else None  # rank 0 logs for all
        with tracked_run(ids, run_name, tags, self.mlflow_run_id, all_params) as tracker:
            if tracker is not None:
                self.mlflow_run_id = tracker.run_id
            if self.world.distributed:  # every rank's checkpoint state and result alike
                self.mlflow_run_id = distributed.broadcast_object(self.mlflow_run_id)
            self._loop(tracker, progress and main, run_name)
            if tracker is not None:
                tracker.log_artifact(str(self.out_dir / HISTORY))
        if self.world.distributed:  # rank 0's has the dev points; also waits for its writes
            self.history = distributed.broadcast_object(self.history)
        dev = self.history["dev"]
        return TrainResult(
            step=self.step,
            epoch=self.epoch,
            history=self.history,
            dev_wer=dev[-1]["wer"] if dev else None,
            checkpoint=self.checkpoint_path,
            resumed_from=self.resumed_from,
            mlflow_run_id=self.mlflow_run_id,
        )

    def _loop(self, tracker, progress: bool, desc: str) -> None:
        s = self.settings
        interactive = sys.stderr.isatty()
        bar = tqdm(
            total=s.max_steps,
            initial=min(self.step, s.max_steps),
            desc=desc,
            unit="step",
            file=sys.stderr,
            mininterval=0.5 if interactive else 30.0,
            disable=not progress,
        )
        saved_at = self.step if self.checkpoint_path.is_file() else -1
        started, steps_since = time.perf_counter(), 0
        with bar:
            batches = self._batches()
            while self.step < s.max_steps:
                self.interval.add(self.train_step(next(batches)))
                steps_since += 1
                bar.update()
                last = self.step == s.max_steps
                if self.step % s.log_every == 0 or last:
                    self._log_interval(tracker, started, steps_since, bar)
                    started, steps_since = time.perf_counter(), 0
                if self.dev_indices and self.world.main and (self.step % s.eval_every == 0 or last):
                    self._log_dev(tracker, bar)
                if self.step % s.checkpoint_every == 0 or last:
                    self.save_checkpoint()
                    saved_at = self.step
            batches.close()
        if saved_at != self.step:  # e.g. max_steps lowered below a checkpoint's step
            self.save_checkpoint()


def train(
    model: Transducer,
    train_data: UtteranceDataset,
    dev_data: UtteranceDataset | None,
    settings: TrainSettings,
    out_dir: str | os.PathLike,
    *,
    loss_fn: LossFn | None = None,
    extra_modules: Mapping[str, nn.Module] | None = None,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
    mlflow_ids: str | os.PathLike | None = None,
    run_name: str = "train",
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place to ``settings.max_steps``, resuming ``out_dir`` if it holds a
    checkpoint. See :class:`Trainer` for the arguments; ``params`` are extra MLflow params
    beside the settings and the model config.
    """
    trainer = Trainer(
        model,
        train_data,
        dev_data,
        settings,
        out_dir,
        loss_fn=loss_fn,
        extra_modules=extra_modules,
        param_groups=param_groups,
        device=device,
        threads=threads,
    )
    return trainer.run(
        mlflow_ids=mlflow_ids, run_name=run_name, tags=tags, params=params, progress=progress
    )
