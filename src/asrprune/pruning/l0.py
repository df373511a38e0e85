"""Our method: L0 structured pruning under a Lagrangian budget with layer-wise distillation.

A copy of the teacher gets hard-concrete gates on the unit kinds a method names. Training
minimises the transducer loss, the distillation loss and the Lagrangian
lambda1 (s - t) + lambda2 (s - t)^2, where s is the expected kept fraction of the blocks'
parameters (or FLOPs at a reference length, or the encoder's time by a latency model
measured on the target machine: asrprune.model.latency) and t the target kept fraction, warmed up
linearly from the initial gates' expected kept fraction (about 0.94, not 1: a target of 1
would push the gates open and wind lambda1 the wrong way). The lambdas are maximised by
their own optimiser group, the log-alphas have their own learning rate. At the end the
final masks are held to the target (:func:`hold_target`: the Lagrangian holds the
*expected* size, which can still be over it when training stops), cut out (compaction)
and the compact model is fine-tuned with the same trainer.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from asrprune.data.batching import Batch
from asrprune.device import resolve_device
from asrprune.distill import MAP_SIDES, LayerwiseDistill, valid_frames
from asrprune.errors import AsrpruneError
from asrprune.model import ConformerEncoder, EncoderStructure, LatencyModel, Transducer
from asrprune.model.hardconcrete import PINNED_LOGIT, HardConcrete
from asrprune.train import TrainSettings, TransducerLoss

BUDGETS = ("params", "flops", "latency")
ASCENTS = ("adam", "sgd")
FRAMES_PER_SECOND = 100


@dataclass(frozen=True)
class GateKinds:
    """Which unit kinds get gates (the ablations switch some off)."""

    heads: bool = True
    ffn: bool = True  # FFN channels
    conv: bool = True  # whole convolution modules
    hidden_global: bool = True
    hidden_local: bool = True
    ffn_module: bool = False  # whole FFN modules (coarse pruning)


@dataclass(frozen=True)
class L0Settings:
    """Hyperparameters of L0 pruning (the method; the trainer's are TrainSettings)."""

    target_warmup_steps: int = 400  # steps over which the target falls to its value
    reference_seconds: float = 10.0  # utterance length the FLOPs budget is counted for
    gate_lr: float = 0.1  # AdamW learning rate of the log-alphas (constant)
    lambda_lr: float = 0.05  # learning rate of the Lagrange multipliers (gradient ascent)
    lambda_ascent: str = "adam"  # their optimiser: adam (the paper's) or sgd (see Lagrangian)
    lambda2_init: float = 0.0  # starting value of lambda2 (2 lambda2 is a proportional gain)
    distill_weight: float = 1.0  # weight of the layer-wise distillation loss (0: none)
    distill_map: str = "student"  # the side the distillation maps are applied to
    width_multiple: int = 1  # kept widths (heads' width, FFN channels, hidden) multiples of this
    hidden_multiple: int | None = None  # kept hidden dimensions' multiple (None: width_multiple)

    def __post_init__(self):
        for name, least in (("target_warmup_steps", 0), ("width_multiple", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise AsrpruneError(f"l0.{name}: expected an integer >= {least}, got {v!r}")
        for name in ("reference_seconds", "gate_lr", "lambda_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise AsrpruneError(f"l0.{name}: expected a positive number, got {v!r}")
        if not isinstance(self.lambda2_init, (int, float)) or self.lambda2_init < 0:
            raise AsrpruneError(
                f"l0.lambda2_init: expected a number >= 0, got {self.lambda2_init!r}"
            )
        if self.lambda_ascent not in ASCENTS:
            raise AsrpruneError(
                f"l0.lambda_ascent: expected one of {', '.join(ASCENTS)}, "
                f"got {self.lambda_ascent!r}"
            )
        h = self.hidden_multiple
        if h is not None and (not isinstance(h, int) or isinstance(h, bool) or h < 1):
            raise AsrpruneError(f"l0.hidden_multiple: expected an integer >= 1 or null, got {h!r}")
        if self.distill_map not in MAP_SIDES:
            raise AsrpruneError(
                f"l0.distill_map: expected one of {', '.join(MAP_SIDES)}, got {self.distill_map!r}"
            )
        if not isinstance(self.distill_weight, (int, float)) or self.distill_weight < 0:
            raise AsrpruneError(
                f"l0.distill_weight: expected a number >= 0, got {self.distill_weight!r}"
            )


@dataclass(frozen=True)
class Method:
    """A pruning method: budget metric, gate kinds, distillation on or off."""

    budget: str
    gates: GateKinds
    distill: bool = True


METHODS: dict[str, Method] = {
    "l0-params": Method("params", GateKinds()),
    "l0-flops": Method("flops", GateKinds()),
    # the encoder's time on a profiled machine (a latency table), not a proxy of it
    "l0-latency": Method("latency", GateKinds()),
    "l0-nohidden": Method("params", GateKinds(hidden_global=False, hidden_local=False)),
    # heads and whole modules only: no FFN-channel and no hidden gates (see README)
    "l0-coarse": Method(
        "params",
        GateKinds(ffn=False, hidden_global=False, hidden_local=False, ffn_module=True),
    ),
    "l0-nokd": Method("params", GateKinds(), distill=False),
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise AsrpruneError(f"unknown L0 method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


class Lagrangian(nn.Module):
    """lambda1 (s - t) + lambda2 (s - t)^2, both multipliers maximised.

    As a controller of s, lambda1 is the integral term and 2 lambda2 (s - t) the
    proportional one. lambda1 starts at 0; lambda2 at ``lambda2_init``: from 0 it grows
    only by (s - t)^2, too slowly to damp the oscillation of s about t.

    ``ascent="adam"``: they are parameters that ``param_groups`` puts in their own
    maximised AdamW group (the paper's choice). Adam moves a multiplier by about its
    learning rate each step whatever the gap, so lambda1 keeps growing while s is above t
    and overshoots: measured here, s went from the target to 9 points under it in 125
    steps. ``ascent="sgd"``: they are buffers, and each training call steps them by ``lr``
    times their gradient (s - t and (s - t)^2) after use, so a step shrinks with the gap.
    """

    def __init__(self, ascent: str = "adam", lr: float = 0.0, lambda2_init: float = 0.0):
        super().__init__()
        if ascent not in ASCENTS:
            raise AsrpruneError(f"lambda ascent: expected one of {', '.join(ASCENTS)}")
        self.ascent, self.lr = ascent, lr
        for name, init in (("lambda1", 0.0), ("lambda2", lambda2_init)):
            value = torch.tensor(float(init))
            if ascent == "adam":
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def forward(self, kept: torch.Tensor, target: float) -> torch.Tensor:
        gap = kept - target
        l1, l2 = (
            (self.lambda1, self.lambda2)
            if self.ascent == "adam"
            else (
                self.lambda1.clone(),
                self.lambda2.clone(),  # the values used, before the step
            )
        )
        value = l1 * gap + l2 * gap * gap
        if self.ascent == "sgd" and self.training:
            with torch.no_grad():
                g = gap.detach()
                self.lambda1 += self.lr * g
                self.lambda2 += self.lr * g * g
        return value


def target_kept(step: int, sparsity: float, warmup_steps: int, start: float = 1.0) -> float:
    """Target kept fraction at (1-based) ``step``: ``start`` at step 0 down to 1 - sparsity,
    linearly, then held."""
    progress = 1.0 if warmup_steps == 0 else min(step / warmup_steps, 1.0)
    return start + (1.0 - sparsity - start) * progress


def budget_size(
    model: Transducer,
    budget: str,
    reference_frames: int,
    latency: LatencyModel | None = None,
) -> torch.Tensor | int:
    """Expected size of the model under its gates: the blocks' parameters or FLOPs, or
    the whole encoder's modelled seconds (``latency``: what the user waits for)."""
    if budget == "params":
        return model.encoder.expected_params()["prunable"]
    if budget == "flops":
        return model.encoder.expected_flops(reference_frames)["prunable"]
    if budget == "latency":
        if latency is None:
            raise AsrpruneError("the latency budget needs a latency table (asrprune latency-table)")
        return model.encoder.expected_latency(latency)
    raise AsrpruneError(f"budget: expected one of {', '.join(BUDGETS)}, got {budget!r}")


def structure_size(
    model: Transducer,
    structure: EncoderStructure,
    budget: str,
    reference_frames: int,
    latency: LatencyModel | None = None,
) -> float:
    """The exact size of an encoder of ``structure`` (of ``model``'s config) in the
    budget's metric, as :func:`budget_size` counts it for binary masks."""
    if budget == "latency":
        if latency is None:
            raise AsrpruneError("the latency budget needs a latency table (asrprune latency-table)")
        return ConformerEncoder.count_latency(structure, latency)
    if budget not in BUDGETS:
        raise AsrpruneError(f"budget: expected one of {', '.join(BUDGETS)}, got {budget!r}")
    report = ConformerEncoder.size_report(model.config, structure, reference_frames)
    return float(report[f"prunable_{budget}"])


@torch.no_grad()
def hold_target(
    student: Transducer,
    budget: str,
    target: float,
    reference_frames: int,
    latency: LatencyModel | None = None,
    iterations: int = 40,
) -> dict[str, float | bool]:
    """Bring the final masks to the largest structure within ``target`` (a kept fraction).

    The Lagrangian holds the expected size, and only where it has converged: at 50% of
    the encoder's time the expected size was still 2-3% over its target when training
    stopped, and the final masks with it (docs/experiments.md#holding-the-target). If the
    final masks are over, the counts of the gates whose kept values are folded into
    weights (heads, FFN channels, convolution and FFN modules) are taken with their
    log-alphas lowered by one common shift (:attr:`HardConcrete.count_shift`), the least
    shift, found by bisection, that brings the final structure to the target: the units
    dropped are those the gates are least sure of, wherever they are, each gate keeps its
    most probable units, and the kept units' values are not touched. Hidden dimensions
    (binary gates) are left: each kept one is at full strength in every LayerNorm that
    reads it, and dropping them as well cost three 50% models 4.1 points of test-clean
    WER (their mean) where the same time taken from the other units cost 0.3; they are
    shifted with the others only where the others alone cannot reach the target. Returns
    the kept fraction before and after, the shift (negative: units taken back; 0: none moved),
    whether hidden gates took it, and whether the target could be met (``fits``): where
    no structure the gates leave is within it (a latency target under the encoder's
    fixed costs) the masks stay as trained, and the job says so.

    Final masks under the target are filled the same way, with a negative shift: the
    least sure units dropped are taken back, by the same one shift, until the next unit
    would pass the target. Rounding to a width multiple can land whole multiples under
    (1-2 points in the 2026-12-07 run, docs/experiments.md#holding-the-target), and a
    budget the method was given is the size it should use.
    """
    every = student.encoder.gates()
    full = structure_size(
        student, EncoderStructure.full(student.config), budget, reference_frames, latency
    )

    def kept(gates: list[HardConcrete], shift: float) -> float | None:
        """The kept fraction with ``gates`` shifted (None: nothing left of the encoder)."""
        for gate in every:
            gate.count_shift = shift if gate in gates else 0.0
        try:
            structure = student.encoder.final_structure()
        except AsrpruneError:  # no hidden dimension left
            return None
        return structure_size(student, structure, budget, reference_frames, latency) / full

    def within(size: float | None) -> bool:
        return size is None or size <= target

    def result(after: float, shift: float = 0.0, hidden: bool = False, fits: bool = True):
        return dict(kept_before=before, kept=after, shift=shift, hidden=hidden, fits=fits)

    def least_within(gates: list[HardConcrete], lo: float, hi: float) -> float:
        """The least shift in (lo, hi] that leaves the final size within the target, by
        bisection (the size falls as the shift rises; ``hi`` is within)."""
        for _ in range(iterations):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if within(kept(gates, mid)) else (mid, hi)
        return hi

    folded = [g for g in every if not g.binary]
    before = kept([], 0.0)
    if before <= target:  # take back what one negative shift can within the target
        bottom = -4 * PINNED_LOGIT  # every unit kept
        shift = bottom if within(kept(folded, bottom)) else least_within(folded, bottom, 0.0)
        after = kept(folded, shift)
        if after > before:
            return result(after, shift)
        kept([], 0.0)  # the same structure: no shift
        return result(before)
    # hidden gates too only where the others cannot reach the target alone (a latency
    # target under the time of the blocks' LayerNorms and residuals, say)
    for gates in (folded, every):
        top = 4 * PINNED_LOGIT  # the final size falls with the shift
        if not within(kept(gates, top)):
            continue
        shift = least_within(gates, 0.0, top)
        after = kept(gates, shift)
        if after is not None:
            return result(after, shift, hidden=gates is every)
    kept([], 0.0)  # no structure the gates leave fits: the masks stay as trained
    return result(before, fits=False)


class L0Loss:
    """Transducer loss + distillation + Lagrangian, with the metrics the history keeps.

    Args:
        teacher: the frozen teacher (eval mode, same device): the full size, and the
            hidden states distilled from. distill: the distillation maps; None: no KD.
        lagrangian: the multipliers.
        train: trainer settings (CTC weight schedule). l0: method settings.
        budget: "params", "flops" or "latency". sparsity: target fraction removed.
        latency: the latency model (the "latency" budget only).
        student: the gated student as built, before any training: the target starts at
            its expected kept fraction. A resumed job builds its student from the same
            seed before the checkpoint is loaded, so the start is the same after a resume.
    """

    def __init__(
        self,
        teacher: Transducer,
        distill: LayerwiseDistill | None,
        lagrangian: Lagrangian,
        train: TrainSettings,
        l0: L0Settings,
        budget: str,
        sparsity: float,
        *,
        student: Transducer,
        latency: LatencyModel | None = None,
    ):
        self.teacher, self.distill, self.lagrangian = teacher, distill, lagrangian
        self.latency = latency
        self.task = TransducerLoss(train)
        self.l0, self.budget, self.sparsity = l0, budget, sparsity
        self.reference_frames = round(l0.reference_seconds * FRAMES_PER_SECOND)
        # the teacher has no gates, so its "expected" size is its exact size
        self.full_size = float(self.size(teacher))
        with torch.no_grad():
            start = self.size(student) / self.full_size
        self.start_kept = float(start)

    def size(self, model: Transducer) -> torch.Tensor | int:
        return budget_size(model, self.budget, self.reference_frames, self.latency)

    def __call__(self, model: Transducer, batch: Batch, step: int):
        kd = self.distill is not None
        out = model(
            batch.feats,
            batch.feat_lens,
            batch.tokens,
            batch.token_lens,
            return_hidden=kd,
            inter_ctc_block=self.task.settings.inter_ctc_block,
        )
        loss, metrics = self.task.combine(out, step)
        if kd:
            with torch.no_grad():
                target = self.teacher.encoder(batch.feats, batch.feat_lens, return_hidden=True)
            valid = valid_frames(out.encoder_lens, out.hidden[0].size(1))
            distill = self.distill(out.hidden, target.hidden, valid)
            loss = loss + self.l0.distill_weight * distill
            metrics["distill_loss"] = float(distill.detach())
        kept = self.size(model) / self.full_size
        t = target_kept(step, self.sparsity, self.l0.target_warmup_steps, self.start_kept)
        constraint = self.lagrangian(kept, t)
        metrics.update(
            expected_kept=float(kept.detach()),
            target_kept=t,
            constraint_loss=float(constraint.detach()),
            lambda1=float(self.lagrangian.lambda1.detach()),
            lambda2=float(self.lagrangian.lambda2.detach()),
        )
        return loss + constraint, metrics


def gated_student(
    teacher: Transducer,
    gates: GateKinds,
    width_multiple: int = 1,
    hidden_multiple: int | None = None,
) -> Transducer:
    """A copy of the teacher with gates on the chosen unit kinds, in training mode; its
    final masks keep widths that are multiples of ``width_multiple``, hidden dimensions of
    ``hidden_multiple`` (None: ``width_multiple``)."""
    student = copy.deepcopy(teacher).train()
    student.encoder.add_gates(
        **dataclasses.asdict(gates), width_multiple=width_multiple, hidden_multiple=hidden_multiple
    )
    if not student.encoder.gates():
        raise AsrpruneError("a pruning method needs at least one kind of gate")
    return student


def param_groups(
    student: Transducer, lagrangian: Lagrangian, l0: L0Settings
) -> list[dict[str, Any]]:
    """Optimiser groups: log-alphas and (Adam ascent) multipliers at constant rates,
    multipliers maximised."""
    groups = [
        {
            "params": [g.log_alpha for g in student.encoder.gates()],
            "lr": l0.gate_lr,
            "weight_decay": 0.0,
            "scheduled": False,
        },
        {
            "params": list(lagrangian.parameters()),
            "lr": l0.lambda_lr,
            "weight_decay": 0.0,
            "maximize": True,
            "scheduled": False,
        },
    ]
    return [g for g in groups if g["params"]]


@dataclass
class L0Setup:
    """Everything a trainer needs to prune one teacher with an L0 method."""

    student: Transducer  # the gated copy of the teacher, in training mode
    teacher: Transducer  # frozen, in eval mode, on the device
    distill: LayerwiseDistill | None  # None: no distillation
    lagrangian: Lagrangian
    loss: L0Loss
    extra_modules: dict[str, nn.Module]  # the trainer's extra_modules
    param_groups: list[dict[str, Any]]  # the trainer's param_groups


def l0_setup(
    teacher: Transducer,
    method_name: str,
    sparsity: float,
    l0: L0Settings,
    train: TrainSettings,
    device: str | torch.device | None = None,
    latency: LatencyModel | None = None,
) -> L0Setup:
    """The L0 set-up of the pruning job and of the scripts that time it, built one way.

    Seeds torch with ``train.seed`` for the gates' initial log-alphas (so a resumed job
    builds the same student and target start), copies the teacher into the student, then
    freezes the teacher (in place) on ``device`` (None: CUDA when available, as the
    trainer picks). ``latency``: the latency model, for a method with that budget.
    """
    m = method(method_name)
    if m.budget == "latency":
        if latency is None:
            raise AsrpruneError(f"{method_name} needs a latency table (asrprune latency-table)")
        latency.check_config(teacher.config)
    torch.manual_seed(train.seed)
    # before freezing: the copy stays trainable
    student = gated_student(teacher, m.gates, l0.width_multiple, l0.hidden_multiple)
    teacher = teacher.eval().to(resolve_device(device))
    for p in teacher.parameters():
        p.requires_grad_(False)
    distill = (
        LayerwiseDistill(len(teacher.encoder.blocks), teacher.config.d_model, l0.distill_map)
        if m.distill and l0.distill_weight > 0
        else None
    )
    lagrangian = Lagrangian(l0.lambda_ascent, l0.lambda_lr, l0.lambda2_init)
    loss = L0Loss(
        teacher,
        distill,
        lagrangian,
        train,
        l0,
        m.budget,
        sparsity,
        student=student,
        latency=latency,
    )
    return L0Setup(
        student=student,
        teacher=teacher,
        distill=distill,
        lagrangian=lagrangian,
        loss=loss,
        extra_modules={"lagrangian": lagrangian} | ({"distill": distill} if distill else {}),
        param_groups=param_groups(student, lagrangian, l0),
    )
