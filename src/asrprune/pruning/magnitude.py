"""Magnitude pruning on our units: the OMP and PARP baselines.

Every unit our method can gate (attention head, FFN channel, convolution module, hidden
dimension globally and per block) is scored by the mean absolute value of the weights it
owns (``ConformerEncoder.gate_magnitudes``), so units of different sizes compare. All
units are ranked together, weakest first (by default each score relative to its kind's,
see ``OmpSettings``), and the fewest are removed such that the encoder blocks lose at
least the target fraction of their parameters. The choice is applied by pinning the
gates of a gated copy of the model, so compaction is the one our method uses. PARP's
re-prunes score heads, FFN channels and convolution modules by their output side alone
(see ``ParpLoss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asrprune.errors import AsrpruneError
from asrprune.model import ConformerBlock, EncoderStructure, Transducer
from asrprune.model.hardconcrete import HardConcrete

RANKINGS = ("per_kind", "global")


@dataclass(frozen=True)
class OmpSettings:
    """How magnitude pruning ranks units: OMP's, and PARP's, which starts from OMP's mask.

    ``global`` ranks the raw scores of every kind together. But kinds differ in scale by
    construction, not by importance: output projections start scaled by 1/sqrt(2 x blocks)
    and LayerNorm gains sit near 1, so heads, FFN channels and convolution modules look
    weaker than hidden dimensions and go first. ``per_kind`` divides each score by the
    mean score of its kind (a RoundingGroup's gates: every head, every FFN channel, ...),
    so kinds compete on magnitude relative to their own kind. The default is the fairer
    baseline by this argument; the two are not yet compared on dev WER.
    """

    ranking: str = "per_kind"

    def __post_init__(self):
        check_ranking(self.ranking, "omp.ranking")


def check_ranking(ranking: str, where: str = "ranking") -> None:
    if ranking not in RANKINGS:
        raise AsrpruneError(f"{where}: expected one of {', '.join(RANKINGS)}, got {ranking!r}")


@dataclass(frozen=True)
class ParpSettings:
    """PARP's own hyperparameter (its training steps are prune.train's)."""

    reprune_every: int = 50  # steps between re-prunes by magnitude

    def __post_init__(self):
        v = self.reprune_every
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise AsrpruneError(f"parp.reprune_every: expected an integer >= 1, got {v!r}")


@dataclass(frozen=True)
class MagnitudeChoice:
    removed: int  # units removed
    units: int  # units ranked
    prunable_params: int  # what the blocks keep
    full_params: int  # what the full blocks have
    sparsity: float  # achieved fraction of the blocks' parameters removed


def _prunable_params(model: Transducer, structure: EncoderStructure) -> int:
    return sum(
        ConformerBlock.count_params(b, structure.d_model, model.config) for b in structure.blocks
    )


def _relative_to_kind(
    scored: list[tuple[HardConcrete, torch.Tensor]],
) -> list[tuple[HardConcrete, torch.Tensor]]:
    """Each score divided by the mean score of its kind: the gates rounded together (a
    RoundingGroup), or a gate alone (the global hidden dimensions). The mean, not the
    median: in PARP's re-prunes a kind's released units score only what they regrew, and
    a kind pruned by more than half would have a median near 0; they lower its mean by at
    most the fraction pruned."""
    kinds: dict[int, list[int]] = {}
    for i, (gate, _) in enumerate(scored):
        kinds.setdefault(id(gate.peers if gate.peers is not None else gate), []).append(i)
    out = list(scored)
    for members in kinds.values():
        mean = torch.cat([scored[i][1] for i in members]).mean()
        mean = mean.clamp_min(torch.finfo(mean.dtype).tiny)  # a kind all zero stays 0
        for i in members:
            out[i] = (scored[i][0], scored[i][1] / mean)
    return out


class MagnitudeRanking:
    """All units of a gated full model ranked together by magnitude, weakest first.

    ``pin(removed)`` pins every gate so that the ``removed`` weakest units go and returns
    the parameters the blocks keep; the ranking is taken once, at construction.
    ``ranking``: ``OmpSettings.ranking``. ``output_side``: see
    ``ConformerEncoder.gate_magnitudes``.
    """

    def __init__(self, model: Transducer, ranking: str = "per_kind", output_side: bool = False):
        self.model = model
        self.scored = model.encoder.gate_magnitudes(output_side=output_side)
        if not self.scored:
            raise AsrpruneError("magnitude pruning needs a model with gates")
        check_ranking(ranking)
        scored = _relative_to_kind(self.scored) if ranking == "per_kind" else self.scored
        # An encoder keeps at least one global hidden dimension: rank its strongest last.
        # (Global dimensions score alike, each averaging over every block, so at high
        # sparsity the ranking could otherwise take them all.)
        parts = []
        for gate, score in scored:
            if gate is model.encoder.hidden_gate:
                score = score.clone()
                score[score.argmax()] = float("inf")
            parts.append(score)
        scores = torch.cat(parts)
        self.owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(parts)])
        order = torch.argsort(scores, stable=True)  # weakest first
        self.rank = torch.empty_like(order)
        self.rank[order] = torch.arange(len(order))
        self.full_params = _prunable_params(model, EncoderStructure.full(model.config))

    def __len__(self) -> int:
        return len(self.rank)

    def pin(self, removed: int) -> int:
        for i, (gate, _) in enumerate(self.scored):
            gate.pin(self.rank[self.owner == i] >= removed)
        return _prunable_params(self.model, self.model.encoder.final_structure())

    def fewest_removed(self, sparsity: float) -> int:
        """The fewest weakest units whose removal takes ``sparsity`` of the blocks'
        parameters (parameters only fall as units go, so a bisection finds it)."""
        budget = (1.0 - sparsity) * self.full_params
        lo, hi = 0, len(self) - 1  # the last unit is never removed
        while lo < hi:
            mid = (lo + hi) // 2
            if self.pin(mid) <= budget:
                hi = mid
            else:
                lo = mid + 1
        return lo


def prune_by_magnitude(
    model: Transducer, sparsity: float, *, ranking: str = "per_kind", output_side: bool = False
) -> MagnitudeChoice:
    """Pin every gate of ``model`` (a gated full model) to keep its strongest units.

    Removes the weakest units, all kinds ranked together, until the blocks have lost at
    least ``sparsity`` of their parameters; one unit fewer would miss the target.
    ``ranking``: ``OmpSettings.ranking``. ``output_side``: score heads, FFN channels and
    convolution modules by the weights through which they write alone (PARP's re-prunes).
    """
    if not 0 <= sparsity < 1:
        raise AsrpruneError(f"sparsity: expected a number in [0, 1), got {sparsity!r}")
    ranked = MagnitudeRanking(model, ranking, output_side)
    removed = ranked.fewest_removed(sparsity)
    kept = ranked.pin(removed)
    full = ranked.full_params
    return MagnitudeChoice(removed, len(ranked), kept, full, 1.0 - kept / full)


@torch.no_grad()
def release_pruned_units(model: Transducer) -> None:
    """PARP's "zeroed but still updated" for heads, FFN channels and convolution modules:
    zero the weights through which each pruned unit writes (its output columns; a module's
    output projection), then open its gate. The unit's output stays exactly 0, but its
    input side still computes, so the zeroed weights get gradients and can regrow. Hidden
    dimensions stay masked: every LayerNorm reads them, so zeroed weights could not make
    one absent, and a masked dimension cannot regrow.
    """
    for block in model.encoder.blocks:
        if block.mhsa.gate is not None:
            dk, dead = block.mhsa.head_dim, block.mhsa.gate.final_mask() == 0
            cols = dead.repeat_interleave(dk)
            block.mhsa.out.weight[:, cols] = 0.0
            block.mhsa.gate.pin(torch.ones_like(dead))
        for ffn in (block.ffn1, block.ffn2):
            if ffn.gate is not None:
                dead = ffn.gate.final_mask() == 0
                ffn.down.weight[:, dead] = 0.0
                ffn.gate.pin(torch.ones_like(dead))
        if block.conv.gate is not None:
            if float(block.conv.gate.final_mask()[0]) == 0:
                block.conv.pointwise2.weight.zero_()
                block.conv.pointwise2.bias.zero_()
            block.conv.gate.pin(torch.ones(1, dtype=torch.bool))


class ParpLoss:
    """The transducer loss, re-pruning by magnitude every ``every`` steps first (PARP).

    ``start`` prunes as OMP does and releases the pruned units. Before step 1 + k * every
    (k >= 1) the units are ranked again by magnitude, pruned units' output weights zeroed
    and their gates opened (``release_pruned_units``); a unit whose weights regrew since
    the last re-prune can come back. The model carries its state (zeroed weights, hidden
    masks), so a resumed job continues where it was.

    A re-prune scores heads, FFN channels and convolution modules by their output side
    alone: those are the weights a release zeroes, so a pruned unit scores what it regrew.
    Scored by all their weights, its input side, which stays as it was, would keep it
    alive, and the re-prune would bring back units that still write nothing.
    """

    def __init__(self, task, sparsity: float, every: int, ranking: str = "per_kind"):
        self.task, self.sparsity, self.every, self.ranking = task, sparsity, every, ranking

    def start(self, model: Transducer) -> MagnitudeChoice:
        """The OMP mask (all weights of every unit scored), its pruned units released."""
        choice = prune_by_magnitude(model, self.sparsity, ranking=self.ranking)
        release_pruned_units(model)
        return choice

    def prune(self, model: Transducer) -> MagnitudeChoice:
        """Pin the gates by output-side magnitude: a re-prune, or the last one."""
        return prune_by_magnitude(model, self.sparsity, ranking=self.ranking, output_side=True)

    def reprune(self, model: Transducer) -> MagnitudeChoice:
        choice = self.prune(model)
        release_pruned_units(model)
        return choice

    def __call__(self, model: Transducer, batch, step: int):
        if step > 1 and (step - 1) % self.every == 0:
            self.reprune(model)
        return self.task(model, batch, step)
