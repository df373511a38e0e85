"""Transcribe audio files with a model file: any rate, WAV or FLAC, mono or not."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from asrprune.data.features import SAMPLE_RATE, Cmvn, compute_fbank, load_audio
from asrprune.data.tokenizer import Tokenizer
from asrprune.errors import AsrpruneError
from asrprune.evaluate import resolve_device, search
from asrprune.model import load_model


@torch.no_grad()
def transcribe(
    model_path: str | os.PathLike,
    audio_paths: Sequence[str | os.PathLike],
    beam: int = 0,
    *,
    device: str | torch.device | None = None,
    threads: int | None = None,
) -> list[tuple[str, str]]:
    """``(path, text)`` per audio file, in order.

    Each file is read with soundfile (anything libsndfile reads: WAV, FLAC, ...), mixed
    down to mono, resampled to 16 kHz, turned into fbank features normalised with the
    model file's CMVN, encoded and decoded (greedy for ``beam`` 0 or 1, else beam search).
    Files are decoded one at a time, so memory stays flat for long lists and long files.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model, tok_bytes, cmvn_state, _ = load_model(model_path, map_location=dev)
    tokenizer = Tokenizer.from_bytes(tok_bytes, f"{model_path} (embedded tokenizer)")
    cmvn = Cmvn(cmvn_state["mean"], cmvn_state["std"]).to(dev)
    results = []
    for path in audio_paths:
        wav = load_audio(path, SAMPLE_RATE, resample=True)  # (samples,), errors name the file
        try:
            feats = cmvn.apply(compute_fbank(wav, SAMPLE_RATE).to(dev))[None]  # (1, T, 80)
            lens = torch.tensor([feats.size(1)], device=dev)  # (1,)
            enc, enc_lens, _ = model.encoder(feats, lens)
        except AsrpruneError as e:
            raise AsrpruneError(f"{path}: {e}") from None
        tokens = search(model, enc, enc_lens, beam)[0]
        results.append((str(path), tokenizer.decode(tokens)))
    return results
