"""An exported folder (stateless predictor) as a sherpa-onnx offline recogniser.

``OfflineRecognizer.from_transducer`` fixes sherpa-onnx's default fbank (samples in
[-1, 1], edges not snipped, mel bank up to 7.6 kHz), which is not the fbank the model was
trained on; this builds the recogniser from its parts with the folder's own ``features``.
sherpa-onnx's greedy search emits at most one token per frame.
"""

from __future__ import annotations

import os
from pathlib import Path

from asrprune.deploy.export import read_manifest
from asrprune.errors import AsrpruneError


def sherpa_recognizer(folder: str | os.PathLike, threads: int = 1, method: str = "greedy_search"):
    """A ``sherpa_onnx.OfflineRecognizer`` for ``folder``; decode with ``create_stream``,
    ``accept_waveform(16000, samples)`` and ``decode_stream``."""
    import sherpa_onnx

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest["predictor"] != "stateless":
        raise AsrpruneError(
            f"{folder}: sherpa-onnx runs transducers with a stateless predictor only; this "
            f"model's predictor is {manifest['predictor']!r}"
        )
    f = manifest["features"]
    config = sherpa_onnx.OfflineRecognizerConfig(
        feat_config=sherpa_onnx.FeatureExtractorConfig(
            sampling_rate=f["sampling_rate"],
            feature_dim=f["feature_dim"],
            low_freq=f["low_freq"],
            high_freq=f["high_freq"],
            dither=f["dither"],
            normalize_samples=f["normalize_samples"],
            snip_edges=f["snip_edges"],
        ),
        model_config=sherpa_onnx.OfflineModelConfig(
            transducer=sherpa_onnx.OfflineTransducerModelConfig(
                str(folder / "encoder.onnx"),
                str(folder / "decoder.onnx"),
                str(folder / "joiner.onnx"),
            ),
            tokens=str(folder / "tokens.txt"),
            num_threads=threads,
            model_type="transducer",
        ),
        decoding_method=method,
    )
    recognizer = sherpa_onnx.OfflineRecognizer.__new__(sherpa_onnx.OfflineRecognizer)
    recognizer.recognizer = sherpa_onnx.lib._sherpa_onnx.OfflineRecognizer(config)
    recognizer.config = config
    return recognizer
