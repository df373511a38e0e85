"""Training data: utterance dataset, frame-budget bucketed batches, collation, SpecAugment.

Batches are cut from utterances sorted by length so that little of a batch is padding, and
sized by a frame budget rather than a count so that memory per step stays roughly flat
whether utterances are 2 s or 20 s long.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from asrprune.data.features import Cmvn, FeatureStore
from asrprune.data.manifest import Utterance, read_manifest
from asrprune.data.tokenizer import Tokenizer
from asrprune.errors import AsrpruneError

Item = tuple[str, torch.Tensor, torch.Tensor]  # (id, feats (T, 80), tokens (U,))


# -----------------------------------------------------------------------------
# dataset


class UtteranceDataset(Dataset):
    """Utterances of a manifest as (id, normalised feats (T, 80) float32, token ids (U,)).

    Transcripts are tokenized once here, so an empty or untokenizable transcript fails at
    start-up, not mid-epoch. Utterances the feature store skipped as bad audio are dropped
    (counted in ``dropped``); any other id missing from the store is an error.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[Utterance],
        store: FeatureStore | str | os.PathLike,
        tokenizer: Tokenizer | str | os.PathLike,
        cmvn: Cmvn | None = None,
    ):
        utts = (
            read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        )
        self.store = store if isinstance(store, FeatureStore) else FeatureStore(store)
        self.tokenizer = (
            tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
        )
        if cmvn is not None and cmvn.dim != self.store.feature_dim:
            raise AsrpruneError(
                f"cmvn has {cmvn.dim} dims but feature store {self.store.dir} has "
                f"{self.store.feature_dim}"
            )
        self.cmvn = cmvn
        self.dropped = [u.id for u in utts if u.id in self.store.skipped]
        self.utts = [u for u in utts if u.id not in self.store.skipped]
        if not self.utts:
            raise AsrpruneError(f"no utterance left to load from feature store {self.store.dir}")
        self.lengths = [self.store.num_frames(u.id) for u in self.utts]  # frames, pre-subsampling
        self.tokens = []
        for u in self.utts:
            ids = self.tokenizer.encode(u.text)
            if not ids:
                raise AsrpruneError(f"utterance {u.id!r}: transcript {u.text!r} has no tokens")
            self.tokens.append(ids)

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> Item:
        utt = self.utts[i]
        feats = self.store[utt.id]  # (T, 80)
        if self.cmvn is not None:
            with torch.no_grad():
                feats = self.cmvn.apply(feats)  # (T, 80)
        return utt.id, feats, torch.tensor(self.tokens[i], dtype=torch.long)  # (U,)


# -----------------------------------------------------------------------------
# sampler


def length_batches(lengths: Sequence[int], max_frames: int) -> list[list[int]]:
    """Indices into ``lengths`` cut into batches of ascending length, each of padded size
    ``len(batch) * longest <= max_frames``; an utterance longer than the budget goes alone.

    For decoding (evaluation, the trainer's dev WER): one pass in a fixed order, unlike the
    training sampler below, which refuses over-long utterances and shuffles.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * lengths[i] > max_frames:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


class DurationBucketSampler(Sampler[list[int]]):
    """Length-bucketed batches of dataset indices under a frame budget.

    Budget: a batch's *padded* size, ``len(batch) * max(lengths in batch)``, never exceeds
    ``max_frames`` (10 ms frames before subsampling; 100 frames = 1 s of audio), except
    that an utterance longer than the budget is a batch of its own (``oversized`` lists
    them). Padded, not summed, because padded tensors are what activations and memory are
    sized by.

    Batches are cut once, greedily, from the utterances sorted by length, so every epoch
    holds the same batches; only their order changes, shuffled per epoch by a generator
    seeded with ``seed + epoch``. With ``sorted_first_epoch`` epoch 0 runs shortest first,
    which helps a transducer learn to align.

    Data parallelism: ``max_frames`` is the budget of the *global* batch, the one an
    optimiser step sees, so a config means the same training on 1 GPU or 8. Every rank
    walks the same order of global batches (the same seed, so no communication) and takes
    its share of each: utterances ``rank``, ``rank + world_size``, ... of the batch sorted by
    length, so shares hold alike lengths and differ by at most one utterance. With
    ``world_size`` > 1 every batch holds at least ``world_size`` utterances (as ESPnet's
    samplers do), so a few batches (of the longest utterances, and the last one cut) may
    exceed the budget.

    The sampler is resumable: ``state_dict()`` holds the epoch and how many (global)
    batches of it were handed out. The epoch advances by itself when one is exhausted,
    and ``set_epoch`` with the current epoch changes nothing, so both loop styles resume
    exactly. A DataLoader with workers prefetches batches: its trainer should checkpoint
    its own (epoch, batches consumed) and pass those to ``load_state_dict``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        *,
        ids: Sequence[str] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        sorted_first_epoch: bool = False,
        max_utterances: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if max_frames <= 0:
            raise AsrpruneError(f"max_frames must be positive, got {max_frames}")
        if not 0 <= rank < world_size:
            raise AsrpruneError(f"rank {rank} is outside world_size {world_size}")
        if len(lengths) == 0:
            raise AsrpruneError("cannot batch an empty dataset")
        if len(lengths) < world_size:
            raise AsrpruneError(
                f"{len(lengths)} utterances cannot give each of {world_size} processes a share"
            )
        if max_utterances is not None and max_utterances < world_size:
            raise AsrpruneError(
                f"max_utterances={max_utterances} is below the {world_size} processes"
            )
        # an utterance over the budget is valid data (the data checks bound its length):
        # it gets a batch of its own, as in ESPnet's samplers, rather than stopping a job
        # whose budget is smaller than the teacher's (prune.train.max_frames)
        self.oversized = [
            ids[i] if ids is not None else i for i, n in enumerate(lengths) if n > max_frames
        ]
        self.max_frames = int(max_frames)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.sorted_first_epoch = sorted_first_epoch
        self.rank = rank
        self.world_size = world_size
        self.batches = self._cut(lengths, self.max_frames, max_utterances, world_size)  # ascending
        self.epoch = 0
        self.position = 0  # global batches of this epoch already handed out

    @staticmethod
    def _cut(
        lengths: Sequence[int], max_frames: int, max_utterances: int | None, min_utterances: int
    ) -> list[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        batches: list[list[int]] = []
        batch: list[int] = []
        for i in order:
            # sorted ascending, so the newcomer sets the padded length
            full = max_utterances is not None and len(batch) >= max_utterances
            if len(batch) >= min_utterances and (
                full or (len(batch) + 1) * lengths[i] > max_frames
            ):
                batches.append(batch)
                batch = []
            batch.append(i)
        if len(batch) < min_utterances and batches:
            batches[-1] += batch  # a last batch too small to share goes with the one before
        else:
            batches.append(batch)
        return batches

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch`` in order, whole: what one process would train on."""
        if not self.shuffle or (self.sorted_first_epoch and epoch == 0):
            order = list(range(len(self.batches)))
        else:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.batches), generator=g).tolist()
        return [self.batches[b] for b in order]

    def share(self, batch: Sequence[int]) -> list[int]:
        """This rank's part of a global batch (sorted by length): every world_size-th one."""
        return list(batch[self.rank :: self.world_size])

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's shares of the batches of ``epoch``, in order."""
        return [self.share(b) for b in self.global_batches(epoch)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        batches = self.epoch_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield list(batch)
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` from its start; a no-op for the current epoch (keeps a resume)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_batches": len(self.batches),
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` left off; refuses a state from different batches."""
        for key, mine in (
            ("num_batches", len(self.batches)),
            ("world_size", self.world_size),
            ("seed", self.seed),
        ):
            if key in state and state[key] != mine:
                raise AsrpruneError(
                    f"sampler state has {key}={state[key]} but this run has {mine}; "
                    "cannot resume at the same batch (data, budget, seed or GPUs changed)"
                )
        if not 0 <= state["position"] <= len(self):
            raise AsrpruneError(
                f"sampler state position {state['position']} outside 0..{len(self)}"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


# -----------------------------------------------------------------------------
# collation


# Frames a GPU batch is padded to a multiple of (Batch.to): 0.32 s, a few percent of an
# utterance's frames, against 63 lengths at most for 20 s.
CUDA_FRAME_MULTIPLE = 32


@dataclass
class Batch:
    ids: list[str]
    feats: torch.Tensor  # (B, T, 80) float32, zero-padded
    feat_lens: torch.Tensor  # (B,) long
    tokens: torch.Tensor  # (B, U) long, padded with the blank (0)
    token_lens: torch.Tensor  # (B,) long

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device``; on a GPU with its frames padded to a multiple of
        ``CUDA_FRAME_MULTIPLE``.

        cuDNN plans every new convolution shape on the host (on an H200, 9 ms a forward and
        25 ms a backward convolution), so with a new length every batch a step of the
        default teacher took 0.58 s for 12 ms of GPU work. With padding, after the first
        batch of each length, it took 0.11 s. The model masks padded frames: outputs on
        real frames and the losses are unchanged.
        """
        batch = self
        if torch.device(device).type == "cuda":
            batch = self.padded(CUDA_FRAME_MULTIPLE)
        return dataclasses.replace(
            batch,
            **{
                f.name: getattr(batch, f.name).to(device, non_blocking=non_blocking)
                for f in dataclasses.fields(self)
                if f.name != "ids"
            },
        )

    def padded(self, multiple: int) -> Batch:
        """The batch with zero frames appended up to a multiple of ``multiple`` frames."""
        T = self.feats.shape[1]
        extra = -T % multiple
        if not extra:
            return self
        feats = torch.nn.functional.pad(self.feats, (0, 0, 0, extra))  # (B, T + extra, 80)
        return dataclasses.replace(self, feats=feats)

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True)."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).pin_memory()
                for f in dataclasses.fields(self)
                if f.name != "ids"
            },
        )


def collate(items: Sequence[Item]) -> Batch:
    """Pad a list of dataset items into one batch."""
    ids = [i for i, _, _ in items]
    feat_lens = torch.tensor([f.shape[0] for _, f, _ in items], dtype=torch.long)  # (B,)
    token_lens = torch.tensor([t.numel() for _, _, t in items], dtype=torch.long)  # (B,)
    dim = items[0][1].shape[1]
    feats = torch.zeros(len(items), int(feat_lens.max()), dim)  # (B, T, 80)
    tokens = torch.zeros(len(items), int(token_lens.max()), dtype=torch.long)  # (B, U)
    for b, (_, f, t) in enumerate(items):
        feats[b, : f.shape[0]] = f
        tokens[b, : t.numel()] = t
    return Batch(ids, feats, feat_lens, tokens, token_lens)


# -----------------------------------------------------------------------------
# SpecAugment


def _band_mask(
    size: torch.Tensor, max_width: torch.Tensor, count: int, extent: int, u: torch.Tensor
) -> torch.Tensor:
    """Union of ``count`` random bands per row, each inside [0, size): (B, extent) bool.

    size, max_width: (B,); u: (B, count, 2) uniform [0, 1) for widths and starts.
    """
    width = (u[..., 0] * (max_width[:, None] + 1)).floor().long()  # (B, count)
    width = torch.minimum(width, size[:, None])
    start = (u[..., 1] * (size[:, None] - width + 1)).floor().long()  # (B, count)
    pos = torch.arange(extent)[None, None, :]  # (1, 1, extent)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, count, extent)
    return inside.any(dim=1)  # (B, extent)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019) on a padded batch; identity in eval.

    Masks are drawn per utterance inside its real length, so padding stays zero and a short
    utterance is not masked more than a long one: time mask widths are at most
    ``time_width_ratio`` of the utterance (the adaptive LibriSpeech policy). Masked values
    are set to 0, the mean after CMVN. Random numbers come from ``generator`` (CPU) if
    given, else torch's global generator, so runs are reproducible either way.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 10,
        time_width_ratio: float = 0.05,
        max_time_width: int | None = None,
    ):
        super().__init__()
        if min(freq_masks, freq_width, time_masks) < 0 or not 0 <= time_width_ratio <= 1:
            raise AsrpruneError(
                f"invalid SpecAugment settings: freq_masks={freq_masks} freq_width={freq_width} "
                f"time_masks={time_masks} time_width_ratio={time_width_ratio}"
            )
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width_ratio = time_width_ratio
        self.max_time_width = max_time_width

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width_ratio={self.time_width_ratio}"
        )

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """feats: (B, T, F), feat_lens: (B,) -> masked copy (B, T, F)."""
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return feats
        B, T, F = feats.shape
        lens = feat_lens.detach().long().cpu()  # (B,)
        mask = torch.zeros(B, T, F, dtype=torch.bool)
        if self.freq_masks:
            u = torch.rand(B, self.freq_masks, 2, generator=generator)
            full = torch.full((B,), F, dtype=torch.long)
            fmask = _band_mask(full, torch.full((B,), self.freq_width), self.freq_masks, F, u)
            mask |= fmask[:, None, :]  # (B, T, F)
        if self.time_masks:
            u = torch.rand(B, self.time_masks, 2, generator=generator)
            max_w = (lens * self.time_width_ratio).floor().long()  # (B,)
            if self.max_time_width is not None:
                max_w = max_w.clamp_max(self.max_time_width)
            tmask = _band_mask(lens, max_w, self.time_masks, T, u)  # (B, T)
            mask |= tmask[:, :, None]
        valid = torch.arange(T)[None, :] < lens[:, None]  # (B, T)
        mask &= valid[:, :, None]
        return feats.masked_fill(mask.to(feats.device), 0.0)


# -----------------------------------------------------------------------------
# vocal tract length perturbation

# The fbank's mel axis (asrprune.data.features: Kaldi's defaults at 16 kHz) and the
# frequency above which VTLP's warp bends back to keep the Nyquist frequency fixed.
_LOW_HZ, _NYQUIST_HZ, _BEND_HZ = 20.0, 8000.0, 4800.0


def _mel(hz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)


def _hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * torch.expm1(mel / 1127.0)


def vtlp_source_hz(hz: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Where a warped spectrum's frequency ``hz`` is read from, per warp factor ``alpha``.

    The warp (Jaitly and Hinton 2013) scales frequencies by ``alpha`` up to a bend, then
    runs linearly to the Nyquist frequency, so the band stays [0, Nyquist]; this is its
    inverse. hz: (F,), alpha: (B,) -> (B, F).
    """
    alpha = alpha[:, None]
    bend_out = _BEND_HZ * torch.clamp(alpha, max=1.0)  # warped frequency at the bend
    bend_in = bend_out / alpha  # its source
    low = hz / alpha
    high = _NYQUIST_HZ - (_NYQUIST_HZ - hz) * (_NYQUIST_HZ - bend_in) / (_NYQUIST_HZ - bend_out)
    return torch.where(hz <= bend_out, low, high)


def vtlp_matrix(alpha: torch.Tensor, bins: int) -> torch.Tensor:
    """Per warp factor, the (bins, bins) linear interpolation that warps a log-mel frame:
    warped = W @ frame. alpha: (B,) -> (B, bins, bins); alpha 1 gives the identity."""
    step = (_mel(torch.tensor(_NYQUIST_HZ)) - _mel(torch.tensor(_LOW_HZ))) / (bins + 1)
    centres = _mel(torch.tensor(_LOW_HZ)) + step * torch.arange(1, bins + 1)  # (bins,)
    source = _mel(vtlp_source_hz(_hz(centres), alpha.double()).float())  # (B, bins)
    pos = ((source - _mel(torch.tensor(_LOW_HZ))) / step - 1.0).clamp(0, bins - 1)
    lower = pos.floor().long().clamp(max=bins - 2)
    frac = pos - lower
    rows = torch.zeros(alpha.numel(), bins, bins)
    rows.scatter_(2, lower[..., None], (1 - frac)[..., None])
    rows.scatter_add_(2, (lower + 1)[..., None], frac[..., None])
    return rows


class VocalTractWarp(nn.Module):
    """Vocal tract length perturbation on a padded batch of log-mel features; identity in
    eval. Each utterance gets a warp factor drawn uniformly from [1 - r, 1 + r]: its
    frequency axis is stretched or squeezed as a longer or shorter vocal tract would,
    pitch and speaking rate untouched, so a few TTS voices act as many speakers. Random
    numbers come from ``generator`` (CPU) if given, as in :class:`SpecAugment`."""

    def __init__(self, alpha_range: float = 0.0):
        super().__init__()
        if not 0 <= alpha_range < 0.5:
            raise AsrpruneError(f"VTLP range {alpha_range!r}: expected a number in [0, 0.5)")
        self.alpha_range = alpha_range

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """feats: (B, T, F) -> warped copy; padding frames stay as they are (zero)."""
        if not self.training or self.alpha_range == 0:
            return feats
        B, _, F = feats.shape
        alpha = 1.0 + self.alpha_range * (2 * torch.rand(B, generator=generator) - 1)
        warp = vtlp_matrix(alpha, F).to(feats.device, feats.dtype)  # (B, F, F)
        return torch.bmm(feats, warp.transpose(1, 2))


# -----------------------------------------------------------------------------
# loader


def make_loader(
    dataset: UtteranceDataset,
    max_frames: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    sorted_first_epoch: bool = False,
    max_utterances: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`DurationBucketSampler` as batch sampler.

    The sampler is ``loader.batch_sampler``: call its ``set_epoch`` / ``state_dict`` there.
    """
    sampler = DurationBucketSampler(
        dataset.lengths,
        max_frames,
        ids=[u.id for u in dataset.utts],
        shuffle=shuffle,
        seed=seed,
        sorted_first_epoch=sorted_first_epoch,
        max_utterances=max_utterances,
        rank=rank,
        world_size=world_size,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
