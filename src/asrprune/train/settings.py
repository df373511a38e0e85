"""Training hyperparameters and the schedules they define (learning rate, CTC weight,
SpecAugment start), as one frozen dataclass checked when it is built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from asrprune.errors import AsrpruneError


@dataclass(frozen=True)
class TrainSettings:
    """Training hyperparameters. Steps count optimiser updates, from 1."""

    max_steps: int = 20000  # optimiser updates in all; training stops after this step
    max_frames: int = 4800  # batch budget: padded batch size in 10 ms frames (4800 = 48 s)
    peak_lr: float = 1e-3  # AdamW learning rate at the end of warm-up
    warmup_steps: int = 1000  # linear warm-up from peak_lr / warmup_steps to peak_lr
    final_lr_ratio: float = 0.05  # cosine decay after warm-up, to peak_lr * this at max_steps
    weight_decay: float = 1e-3  # AdamW decoupled weight decay on matrices (not biases, norms)
    grad_clip: float = 5.0  # clip the global gradient L2 norm to this; 0 disables clipping
    ctc_weight_start: float = 1.0  # CTC loss weight up to ctc_weight_switch_step (alignment)
    ctc_weight_end: float = 0.3  # CTC loss weight after ctc_weight_switch_step
    ctc_weight_switch_step: int = 2000  # last step trained with ctc_weight_start
    inter_ctc_block: int = 0  # 1-based block whose output also gets the CTC loss (0: none)
    inter_ctc_share: float = 0.5  # share of the CTC weight given to that block
    specaug_start_step: int = 4000  # SpecAugment on steps after this one (0: from the start)
    specaug_freq_masks: int = 2  # frequency masks per utterance
    specaug_freq_width: int = 27  # widest frequency mask, in mel bins
    specaug_time_masks: int = 10  # time masks per utterance
    specaug_time_width_ratio: float = 0.05  # widest time mask, as a fraction of the utterance
    vtlp_range: float = 0.0  # VTLP warp factors in [1 - r, 1 + r], with SpecAugment (0: off)
    rnnt_band: int = 0  # pruned RNN-T: tokens per frame the joiner sees (0: every token)
    rnnt_band_simple_weight: float = 0.5  # weight of the pruned loss's additive-joiner loss
    rnnt_band_warmup_steps: int = 0  # steps the banded loss counts 0.1, not 1 (bands settle)
    sorted_first_epoch: bool = True  # first epoch shortest utterances first, then shuffled
    checkpoint_every: int = 500  # steps between checkpoints (one more at the end)
    log_every: int = 25  # steps per logged interval (history, MLflow, progress bar)
    eval_every: int = 500  # steps between greedy dev WER evaluations; 0 disables them
    eval_utterances: int = 100  # dev utterances decoded each evaluation (evenly spaced); 0: all
    seed: int = 1234  # seeds torch, numpy, Python, the data order and SpecAugment
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    bf16: bool = True  # bf16 autocast where the device computes bf16 natively, else fp32

    def __post_init__(self):
        positive = ("max_frames", "checkpoint_every", "log_every")
        non_negative = (
            "max_steps",  # 0: no training (a pruned model that is not fine-tuned)
            "warmup_steps",
            "ctc_weight_switch_step",
            "inter_ctc_block",
            "rnnt_band",
            "rnnt_band_warmup_steps",
            "specaug_start_step",
            "specaug_freq_masks",
            "specaug_freq_width",
            "specaug_time_masks",
            "eval_every",
            "eval_utterances",
            "num_workers",
        )
        for name in positive + non_negative:
            v = getattr(self, name)
            low = 1 if name in positive else 0
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise AsrpruneError(f"train.{name}: expected an integer >= {low}, got {v!r}")
        numbers = ("peak_lr", "weight_decay", "grad_clip", "ctc_weight_start", "ctc_weight_end")
        for name in (*numbers, "rnnt_band_simple_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise AsrpruneError(f"train.{name}: expected a number >= 0, got {v!r}")
        if not self.peak_lr > 0:
            raise AsrpruneError(f"train.peak_lr: expected a positive number, got {self.peak_lr}")
        for name in ("final_lr_ratio", "specaug_time_width_ratio", "inter_ctc_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                raise AsrpruneError(f"train.{name}: expected a number in [0, 1], got {v!r}")
        if not isinstance(self.vtlp_range, (int, float)) or not 0 <= self.vtlp_range < 0.5:
            raise AsrpruneError(
                f"train.vtlp_range: expected a number in [0, 0.5), got {self.vtlp_range!r}"
            )
        for name in ("sorted_first_epoch", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise AsrpruneError(f"train.{name}: expected true or false")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise AsrpruneError(f"train.seed: expected an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def lr_factor(self, completed: int) -> float:
        """Learning rate / peak_lr for the update after ``completed`` updates.

        Linear warm-up: (completed + 1) / warmup_steps, so the first update is not wasted
        at lr 0; then half a cosine from 1 down to ``final_lr_ratio`` at ``max_steps``.
        """
        if completed < self.warmup_steps:
            return (completed + 1) / self.warmup_steps
        span = max(self.max_steps - self.warmup_steps, 1)
        progress = min((completed - self.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * cosine

    def ctc_weight(self, step: int) -> float:
        """CTC weight of (1-based) ``step``: a switch, not a ramp, at ctc_weight_switch_step."""
        return self.ctc_weight_start if step <= self.ctc_weight_switch_step else self.ctc_weight_end

    def band_weight(self, step: int) -> float:
        """Weight of the banded (pruned) RNN-T loss at (1-based) ``step``: 0.1 while the
        additive joiner's bands are still poor, then 1."""
        return 0.1 if step <= self.rnnt_band_warmup_steps else 1.0

    def specaug_on(self, step: int) -> bool:
        return step > self.specaug_start_step
