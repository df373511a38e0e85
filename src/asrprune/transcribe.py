"""Transcribe audio files with a model file: any rate, WAV or FLAC, mono or not."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from asrprune.data.features import SAMPLE_RATE, compute_fbank, load_audio
from asrprune.device import resolve_device
from asrprune.errors import AsrpruneError
from asrprune.lm import LmSettings, transcript_lm
from asrprune.model.decoding import search
from asrprune.model_file import open_model_file


class Recogniser:
    """A model file (or an export folder) ready to decode 16 kHz waveforms one at a time.

    Each waveform becomes fbank features normalised with the model file's CMVN, is
    encoded and decoded: greedy for ``beam`` 0 or 1, else beam search, with shallow fusion
    of a token n-gram counted on ``lm_text`` (a text file or manifest) when ``lm.order``
    is set, as rule evaluate decodes with config ``evaluate.lm``. ``beam`` None and ``lm`` None
    decode as the model says it is decoded (an export's ``decoding``: evaluation's beam
    and n-gram), else greedily without an LM; ``lm=NO_LM`` turns its n-gram off.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        beam: int | None = None,
        device: str | torch.device | None = None,
        lm: LmSettings | None = None,
        lm_text: str | os.PathLike | None = None,
    ):
        self.device = resolve_device(device)
        f = open_model_file(model_path, map_location=self.device)
        self.model, self.tokenizer, self.cmvn = f.model, f.tokenizer, f.cmvn.to(self.device)
        carried = f.decoding
        self.beam = beam if beam is not None else carried.beam if carried else 0
        if lm is not None:
            self.fusion = transcript_lm(lm_text, self.tokenizer, lm, self.beam)
        elif carried is not None and carried.lm.order and self.beam > 1:
            self.fusion = replace(carried, beam=self.beam).fusion(self.tokenizer.vocab_size)
        else:
            self.fusion = None

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> str:
        """The transcript of one mono 16 kHz waveform ``(samples,)``."""
        feats = self.cmvn.apply(compute_fbank(wav, SAMPLE_RATE).to(self.device))[None]
        lens = torch.tensor([feats.size(1)], device=self.device)  # (1,)
        enc, enc_lens, _ = self.model.encoder(feats, lens)  # feats: (1, T, 80)
        ids = search(self.model, enc, enc_lens, self.beam, self.fusion)[0]
        return self.tokenizer.decode(ids)


@dataclass(frozen=True)
class Transcript:
    """One audio file's outcome: its transcript, or why it failed (naming the file)."""

    path: str
    text: str | None  # None when the file failed
    error: str | None = None


def transcribe_each(
    model_path: str | os.PathLike,
    audio_paths: Sequence[str | os.PathLike],
    beam: int | None = None,
    *,
    device: str | torch.device | None = None,
    threads: int | None = None,
    lm: LmSettings | None = None,
    lm_text: str | os.PathLike | None = None,
) -> Iterator[Transcript]:
    """A :class:`Transcript` per audio file, in order, each as soon as it is decoded.

    Each file is read with soundfile (anything libsndfile reads: WAV, FLAC, ...), mixed
    down to mono and resampled to 16 kHz. Files are decoded one at a time, so memory
    stays flat for long lists and long files. A bad file (missing, unreadable, too short,
    NaN samples) yields its error and the next files are still decoded, so one bad file
    among many costs no good transcript; a bad model or setting raises at once.
    ``beam`` and ``lm`` as :class:`Recogniser` takes them.
    """
    if threads is not None:
        if threads < 1:
            raise AsrpruneError(f"threads: {threads}, expected 1 or more")
        torch.set_num_threads(threads)
    recognise = Recogniser(model_path, beam, device, lm, lm_text)
    for path in audio_paths:
        try:
            wav = load_audio(path, SAMPLE_RATE, resample=True)  # (samples,), errors name the file
            yield Transcript(str(path), recognise(wav))
        except AsrpruneError as e:
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            yield Transcript(str(path), None, message)


def transcribe(
    model_path: str | os.PathLike,
    audio_paths: Sequence[str | os.PathLike],
    beam: int | None = None,
    **kwargs,
) -> list[tuple[str, str]]:
    """``(path, text)`` per audio file, in order; the first bad file raises, naming it.

    ``kwargs`` are those of :func:`transcribe_each`, which goes on past a bad file.
    """
    results = []
    for t in transcribe_each(model_path, audio_paths, beam, **kwargs):
        if t.error is not None:
            raise AsrpruneError(t.error)
        results.append((t.path, t.text))
    return results
