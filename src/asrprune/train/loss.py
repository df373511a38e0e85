"""The trainer's default loss and the signature of any other.

The default is the transducer's RNN-T loss plus a CTC term whose weight is high early and
drops at a switch step: on this corpus a transducer trained with a low CTC weight from the
start never left the blank-only stage, and CTC pulls the encoder into alignment first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from asrprune.data.batching import Batch
from asrprune.errors import AsrpruneError
from asrprune.train.settings import TrainSettings

# loss_fn(model, batch, step) -> (loss to minimise, float metrics to log); step is 1-based
LossFn = Callable[[nn.Module, Batch, int], tuple[torch.Tensor, dict[str, float]]]


class TransducerLoss:
    """RNN-T loss + ctc_weight(step) * CTC loss (both averaged over the batch's utterances).

    With ``inter_ctc_block`` the CTC term is shared between the encoder output and that
    block's output (intermediate CTC, Lee and Watanabe 2021): a shallow block gets a direct
    alignment signal, which shortens the blank-only plateau of a deep encoder.

    With ``simple`` (an additive joiner, settings ``rnnt_band`` > 0) the RNN-T loss is the
    pruned one on bands of ``rnnt_band`` tokens per frame, weighted by
    ``settings.band_weight(step)``, plus ``rnnt_band_simple_weight`` x the additive
    joiner's own loss (asrprune.model.pruned_rnnt).

    A pruning loss can wrap it: call :meth:`combine` on the ``TransducerOutput`` it already
    has (e.g. from a forward with ``return_hidden=True``) and add its own terms.
    """

    def __init__(self, settings: TrainSettings, simple: nn.Module | None = None):
        if settings.rnnt_band and simple is None:
            raise AsrpruneError("train.rnnt_band needs the additive joiner of the pruned loss")
        self.settings, self.simple = settings, simple

    def combine(self, out, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        metrics = {"rnnt_loss": float(out.rnnt_loss.detach())}
        loss = out.rnnt_loss
        if out.simple_loss is not None:
            metrics["simple_loss"] = float(out.simple_loss.detach())
            weight = self.settings.band_weight(step)
            loss = weight * loss + self.settings.rnnt_band_simple_weight * out.simple_loss
        if out.ctc_loss is not None:
            weight = self.settings.ctc_weight(step)
            metrics["ctc_loss"] = float(out.ctc_loss.detach())
            metrics["ctc_weight"] = weight
            ctc = out.ctc_loss
            if out.inter_ctc_loss is not None:
                metrics["inter_ctc_loss"] = float(out.inter_ctc_loss.detach())
                share = self.settings.inter_ctc_share
                ctc = (1 - share) * ctc + share * out.inter_ctc_loss
            if weight > 0:
                loss = loss + weight * ctc
        return loss, metrics

    def __call__(self, model: nn.Module, batch: Batch, step: int):
        out = model(
            batch.feats,
            batch.feat_lens,
            batch.tokens,
            batch.token_lens,
            inter_ctc_block=self.settings.inter_ctc_block,
            band=(self.simple, self.settings.rnnt_band) if self.settings.rnnt_band else None,
        )
        return self.combine(out, step)
