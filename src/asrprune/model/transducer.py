"""Transducer: Conformer encoder, predictor (stateless or LSTM), joiner, RNN-T and CTC losses.

Blank (id 0) doubles as the start-of-sequence symbol of the predictor. Predictor states are
tuples of tensors with the batch first, so decoding can select and merge them generically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from asrprune.data.tokenizer import BLANK_ID
from asrprune.errors import AsrpruneError
from asrprune.model.conformer import ConformerEncoder, Conv2dSubsampling
from asrprune.model.lowrank import low_rank_savings
from asrprune.model.pruned_rnnt import pruned_rnnt_nll
from asrprune.model.rnnt_loss import transducer_nll
from asrprune.model.structure import EncoderStructure, ModelConfig

State = tuple[torch.Tensor, ...]  # every tensor (N, ...), batch first


# -----------------------------------------------------------------------------
# predictor


class Predictor(nn.Module):
    """Label predictor: embedding, then a causal depthwise conv + ReLU (stateless) or an LSTM.

    The stateless variant (as icefall's stateless decoder) sees only the last
    ``config.predictor_context`` tokens; the LSTM sees the whole history.
    forward: tokens (B, U) -> (B, U+1, predictor_dim); output u has seen blank, y_1 .. y_u.
    step: last token (N,), state -> output (N, predictor_dim), new state.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.kind = config.predictor
        self.dim = config.predictor_dim
        self.embedding = nn.Embedding(config.vocab_size, config.predictor_dim)
        if self.kind == "stateless":
            self.context = config.predictor_context
            self.conv = (
                nn.Conv1d(self.dim, self.dim, self.context, groups=self.dim, bias=False)
                if self.context > 1
                else None
            )
        else:
            self.layers = config.predictor_layers
            self.lstm = nn.LSTM(self.dim, self.dim, config.predictor_layers, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)

    def _stateless(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, context-1+U) left-padded with blanks -> (N, U, dim)."""
        e = self.embedding(tokens)  # (N, c-1+U, dim)
        if self.conv is not None:
            e = self.conv(e.transpose(1, 2)).transpose(1, 2)  # (N, U, dim)
        return F.relu(e)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B = tokens.size(0)
        if self.kind == "stateless":
            # blanks before the sequence: the start symbol and the causal left context
            start = tokens.new_full((B, self.context), BLANK_ID)
            out = self._stateless(torch.cat((start, tokens), dim=1))  # (B, U+1, dim)
        else:
            start = tokens.new_full((B, 1), BLANK_ID)
            out, _ = self.lstm(self.embedding(torch.cat((start, tokens), dim=1)))  # (B, U+1, dim)
        return self.dropout(out)

    def input_gate_table(self) -> torch.Tensor:
        """(V, 4 dim) the LSTM's first-layer input term of every token: a step's input
        depends on its token alone, so a table saves half a one-layer step's work."""
        lstm = self.lstm
        return F.linear(self.embedding.weight, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)

    def init_state(self, batch: int, device=None) -> State:
        """The state before any token: blank history (stateless) or zero (h, c) (LSTM)."""
        if self.kind == "stateless":
            return (
                torch.full((batch, self.context - 1), BLANK_ID, dtype=torch.long, device=device),
            )
        dtype = self.embedding.weight.dtype
        zeros = torch.zeros(batch, self.layers, self.dim, device=device, dtype=dtype)
        return (zeros, zeros.clone())  # h, c: (N, layers, dim)

    def step(
        self, token: torch.Tensor, state: State, input_gates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """One token per sequence: token (N,) -> output (N, dim) and the state after it.

        LSTM only: ``input_gates`` (N, 4 dim), if given, is the first layer's input term
        for these tokens, ``W_ih e(token) + b_ih + b_hh`` (:meth:`input_gate_table` rows),
        which then is not computed here.
        """
        if self.kind == "stateless":
            history = torch.cat((state[0], token[:, None]), dim=1)  # (N, context)
            return self._stateless(history)[:, -1], (history[:, 1:],)
        # the LSTM's cell equations on its own weights: nn.LSTM costs about 4x as much for
        # one step of a few sequences on a CPU (measured), and search calls it per frame
        x, (h, c) = self.embedding(token), state  # (N, dim), (N, layers, dim) x 2
        hs, cs = [], []
        for k in range(self.layers):
            if k == 0 and input_gates is not None:
                gates = input_gates + F.linear(h[:, 0], self.lstm.weight_hh_l0)
            else:
                gates = F.linear(
                    x, getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"bias_ih_l{k}")
                ) + F.linear(
                    h[:, k],
                    getattr(self.lstm, f"weight_hh_l{k}"),
                    getattr(self.lstm, f"bias_hh_l{k}"),
                )  # (N, 4 dim): input, forget, cell and output gates, nn.LSTM's order
            i, f, g, o = gates.chunk(4, dim=1)
            cs.append(torch.sigmoid(f) * c[:, k] + torch.sigmoid(i) * torch.tanh(g))
            x = torch.sigmoid(o) * torch.tanh(cs[-1])
            hs.append(x)
        return x, (torch.stack(hs, dim=1), torch.stack(cs, dim=1))


def where_state(cond: torch.Tensor, new: State, old: State) -> State:
    """Per sequence, ``new`` where cond (N,) is True else ``old``."""
    return tuple(
        torch.where(cond.view(-1, *([1] * (n.dim() - 1))), n, o)
        for n, o in zip(new, old, strict=True)
    )


# -----------------------------------------------------------------------------
# joiner


class Joiner(nn.Module):
    """enc_proj(enc) + pred_proj(pred), tanh, Linear to the vocabulary.

    Projections are separate methods so decoding projects each frame and each predictor
    output once. forward: enc (..., enc_dim), pred (..., pred_dim), broadcastable ->
    logits (..., vocab).
    """

    def __init__(self, enc_dim: int, pred_dim: int, joiner_dim: int, vocab_size: int):
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, joiner_dim)
        self.pred_proj = nn.Linear(pred_dim, joiner_dim)
        self.out = nn.Linear(joiner_dim, vocab_size)

    def joint(self, enc_p: torch.Tensor, pred_p: torch.Tensor) -> torch.Tensor:
        """Already projected inputs (..., joiner_dim), broadcastable -> logits (..., vocab)."""
        return self.out(torch.tanh(enc_p + pred_p))

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return self.joint(self.enc_proj(enc), self.pred_proj(pred))


# -----------------------------------------------------------------------------
# transducer


@dataclass
class TransducerOutput:
    rnnt_loss: torch.Tensor  # scalar, mean over utterances of -log P(y | x)
    ctc_loss: torch.Tensor | None  # scalar, mean over utterances (not per token); no head: None
    inter_ctc_loss: torch.Tensor | None  # the same CTC head on an intermediate block, if asked
    encoder_out: torch.Tensor  # (B, T', d_model)
    encoder_lens: torch.Tensor  # (B,)
    hidden: list[torch.Tensor] | None  # every block's output (B, T', d_model), if asked
    # the additive joiner's loss when the RNN-T loss was banded (pruned RNN-T), else None
    simple_loss: torch.Tensor | None = None


@dataclass(frozen=True)
class ParamCounts:
    encoder: int  # subsampling + blocks
    prunable: int  # the encoder blocks: what structured pruning can remove
    total: int  # everything: encoder, predictor, joiner, CTC head


class Transducer(nn.Module):
    """Conformer-Transducer with an optional CTC head on the encoder.

    Args:
        config: hyperparameters. structure: the encoder's (pruned) sizes, default full.
    forward: feats (B, T, input_dim), feat_lens (B,), tokens (B, U) padded with blank,
        token_lens (B,), return_hidden, inter_ctc_block (1-based block whose output also
        gets the CTC loss, through the same head; 0: none) -> TransducerOutput. The losses
        are per utterance (summed over its frames / tokens) and averaged over the batch, so
        they weigh alike in a mix.
    """

    def __init__(self, config: ModelConfig, structure: EncoderStructure | None = None):
        super().__init__()
        structure = EncoderStructure.full(config) if structure is None else structure
        self.config, self.structure = config, structure
        self.encoder = ConformerEncoder(config, structure)
        self.predictor = Predictor(config)
        self.joiner = Joiner(
            structure.d_model, config.predictor_dim, config.joiner_dim, config.vocab_size
        )
        self.ctc_head = nn.Linear(structure.d_model, config.vocab_size) if config.ctc_head else None

    @classmethod
    @torch.no_grad()
    def compacted(cls, src: Transducer) -> Transducer:
        """The physically smaller model a gated ``src`` stands for under its final masks.

        Heads, FFN channels, convolution modules and hidden dimensions the masks drop are
        cut out, mask values below 1 are folded into the weights, and the result has no
        gates: in eval mode it computes what ``src`` computes in eval mode.
        """
        device = next(src.parameters()).device
        model = cls(src.config, src.encoder.final_structure()).to(device)
        kept = model.encoder.load_pruned(src.encoder)  # (d',) global hidden dims kept
        model.predictor.load_state_dict(src.predictor.state_dict())
        model.joiner.load_state_dict(
            {**src.joiner.state_dict(), "enc_proj.weight": src.joiner.enc_proj.weight[:, kept]}
        )
        if src.ctc_head is not None:
            model.ctc_head.weight.copy_(src.ctc_head.weight[:, kept])
            model.ctc_head.bias.copy_(src.ctc_head.bias)
        return model.train(src.training)

    def size_report(self, frames: int) -> dict:
        """``ConformerEncoder.size_report`` of this model's structure, less what its
        low-rank (SVD) layers save."""
        report = ConformerEncoder.size_report(self.config, self.structure, frames)
        T = Conv2dSubsampling.output_length(frames, self.config.subsampling)
        params, flops = low_rank_savings(self.encoder.blocks, T)
        if params or flops:
            full = ConformerEncoder.size_report(
                self.config, EncoderStructure.full(self.config), frames
            )
            for key in ("encoder_params", "prunable_params"):
                report[key] -= params
            for key in ("encoder_flops", "prunable_flops"):
                report[key] -= flops
            report["sparsity"] = 1.0 - report["prunable_params"] / full["prunable_params"]
            report["flops_sparsity"] = 1.0 - report["prunable_flops"] / full["prunable_flops"]
        return report

    def param_counts(self) -> ParamCounts:
        encoder = sum(p.numel() for p in self.encoder.parameters())
        prunable = sum(p.numel() for p in self.encoder.blocks.parameters())
        return ParamCounts(encoder, prunable, sum(p.numel() for p in self.parameters()))

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        tokens: torch.Tensor,
        token_lens: torch.Tensor,
        return_hidden: bool = False,
        inter_ctc_block: int = 0,
        band: tuple[nn.Module, int] | None = None,
    ) -> TransducerOutput:
        """Losses of a batch. ``band`` = (a ``SimpleJoiner``, tokens per frame): the RNN-T
        loss is the pruned one (asrprune.model.pruned_rnnt) and ``simple_loss`` the
        additive joiner's."""
        if inter_ctc_block and self.ctc_head is None:
            raise AsrpruneError("intermediate CTC needs the model's CTC head (model.ctc_head)")
        if not 0 <= inter_ctc_block <= len(self.encoder.blocks):
            raise AsrpruneError(
                f"inter_ctc_block {inter_ctc_block} is outside the encoder's "
                f"{len(self.encoder.blocks)} blocks"
            )
        enc, enc_lens, hidden = self.encoder(feats, feat_lens, return_hidden or inter_ctc_block > 0)
        # the loss wants tensors exactly as long as the longest utterance / transcript
        enc = enc[:, : int(enc_lens.max())]  # (B, T', d)
        tokens = tokens[:, : int(token_lens.max())]  # (B, U)
        pred = self.predictor(tokens)  # (B, U+1, P)
        simple = None
        if band is None:
            logits = self.joiner(enc[:, :, None], pred[:, None])  # (B, T', U+1, V)
            # the RNN-T recursion sums many log-probabilities: fp32 whatever autocast chose
            rnnt = transducer_nll(logits, tokens, enc_lens, token_lens, BLANK_ID).mean()
        else:
            simple_joiner, size = band
            simple, rnnt = pruned_rnnt_nll(
                self.joiner, simple_joiner, enc, pred, tokens, enc_lens, token_lens, size, BLANK_ID
            )
            simple, rnnt = simple.mean(), rnnt.mean()
        ctc = None if self.ctc_head is None else self._ctc(enc, enc_lens, tokens, token_lens)
        inter = None
        if inter_ctc_block:
            h = hidden[inter_ctc_block - 1][:, : enc.size(1)]  # (B, T', d)
            inter = self._ctc(h, enc_lens, tokens, token_lens)
        hidden = hidden if return_hidden else None
        return TransducerOutput(rnnt, ctc, inter, enc, enc_lens, hidden, simple)

    def _ctc(self, enc, enc_lens, tokens, token_lens) -> torch.Tensor:
        log_probs = F.log_softmax(self.ctc_head(enc).float(), dim=-1)  # (B, T', V)
        return F.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V)
            tokens,
            enc_lens,
            token_lens,
            blank=BLANK_ID,
            reduction="sum",
            zero_infinity=True,
        ) / enc.size(0)
