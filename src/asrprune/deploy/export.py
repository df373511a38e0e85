"""Export a model file to an ONNX folder, checked against PyTorch as it is written.

The folder holds ``encoder.onnx``, ``decoder.onnx`` and ``joiner.onnx`` (see
:mod:`asrprune.deploy.graphs`), ``tokens.txt`` ("piece id" per line), the SentencePiece
model (``tokenizer.model``) and ``export.json``: what the graphs expect (predictor kind,
context, vocabulary, the fbank settings) and the check's result. A model with the
stateless predictor loads in sherpa-onnx as an offline transducer; ``export.json``'s
``features`` are the feature-extractor settings that reproduce the training features.

With ``int8`` the MatMul and Gemm weights are quantised by ONNX Runtime's dynamic int8
quantisation; the check then reports the difference without a limit (WER tells more).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from asrprune.config import settings_from_dict
from asrprune.data.features import FRAME_LENGTH_MS, FRAME_SHIFT_MS, NUM_MEL_BINS, SAMPLE_RATE
from asrprune.data.tokenizer import BLANK_ID, Tokenizer
from asrprune.deploy.graphs import (
    EncoderGraph,
    JoinerGraph,
    LstmDecoderGraph,
    StatelessDecoderGraph,
)
from asrprune.errors import AsrpruneError
from asrprune.io import read_json, write_json
from asrprune.lm import NO_LM, Decoding, LmSettings, lm_sequences
from asrprune.model.conformer import Conv2dSubsampling
from asrprune.model.io import architecture
from asrprune.model_file import ModelFile, open_model_file

FORMAT = "asrprune-onnx"
VERSION = 1
OPSET = 18
GRAPHS = ("encoder", "decoder", "joiner")
MANIFEST = "export.json"
TOKENIZER = "tokenizer.model"
LM_TOKENS = "lm_tokens.npz"  # the token sequences the decoding's n-gram is counted on
MAX_FP32_DIFF = 1e-3  # largest |ONNX - PyTorch| the fp32 check accepts, of any graph

# The Kaldi fbank the training features are (data.features.compute_fbank), in the names
# of sherpa-onnx's FeatureExtractorConfig: 16-bit sample scale, edges snipped, the mel
# bank up to Nyquist (sherpa-onnx's defaults differ in all three).
FEATURES = {
    "sampling_rate": SAMPLE_RATE,
    "feature_dim": NUM_MEL_BINS,
    "frame_length_ms": FRAME_LENGTH_MS,
    "frame_shift_ms": FRAME_SHIFT_MS,
    "low_freq": 20.0,
    "high_freq": 0.0,
    "dither": 0.0,
    "normalize_samples": False,
    "snip_edges": True,
}


def export_graph(graph: torch.nn.Module, args: tuple, path: Path, names: dict, axes: dict) -> None:
    """One graph to ``path`` with the dynamic ``axes`` ({input or output: {dim: name}}).

    The TorchScript exporter: TorchDynamo's (torch 2.14) fails to decompose the encoder's
    attention (a view of SDPA's output with symbolic strides)."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings, one per op
        torch.onnx.export(
            graph.eval(),
            args,
            str(path),
            input_names=names["inputs"],
            output_names=names["outputs"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def _set_metadata(path: Path, meta: dict) -> None:
    """String metadata on an ONNX file (what sherpa-onnx reads, e.g. ``vocab_size``)."""
    import onnx

    model = onnx.load(str(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def _quantize(folder: Path) -> None:
    """Every graph of ``folder`` to dynamic int8 weights, in place."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # it logs advice per graph (shape pre-processing) on the root logger; not needed here
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        for name in GRAPHS:
            fp32 = folder / f"{name}.onnx"
            int8 = folder / f"{name}.int8.onnx"
            quantize_dynamic(
                str(fp32),
                str(int8),
                op_types_to_quantize=["MatMul", "Gemm"],
                weight_type=QuantType.QInt8,
            )
            int8.replace(fp32)
    finally:
        root.setLevel(level)


def check_batch(cmvn, frames=(173, 121, 64), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of features shaped like training features under ``cmvn``:
    (N, T, D) raw fbank values, (N,) lengths, the rest of each row zero padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(frames), max(frames), cmvn.dim)
    for i, t in enumerate(frames):
        x[i, :t] = cmvn.mean + cmvn.std * torch.randn(t, cmvn.dim, generator=g)
    return x, torch.tensor(frames)


@torch.no_grad()
def _reference(f: ModelFile, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """What the exported encoder must give: CMVN per utterance as the data pipeline
    applies it, the encoder and the joiner's projection. (N, T', J)."""
    normed = torch.zeros_like(x)
    for i, t in enumerate(lens.tolist()):
        normed[i, :t] = f.cmvn.apply(x[i, :t])
    out, _, _ = f.model.encoder(normed, lens)
    return f.model.joiner.enc_proj(out)


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a - torch.from_numpy(b)).abs().max())


@torch.no_grad()
def check_export(f: ModelFile, folder: Path) -> dict:
    """Largest |ONNX Runtime - PyTorch| of the encoder on a padded batch (real frames
    only), of the decoder after a few tokens and of the joiner on their outputs."""
    from asrprune.deploy.runtime import OnnxTransducer

    onnx = OnnxTransducer(folder, threads=1)
    x, lens = check_batch(f.cmvn)
    ref = _reference(f, x, lens)  # (N, T', J)
    out, out_lens, _ = onnx.encoder(x, lens)
    if not torch.equal(out_lens, Conv2dSubsampling.output_length(lens, f.model.config.subsampling)):
        raise AsrpruneError(f"{folder}: the exported encoder's output lengths are wrong")
    encoder = max(
        _max_diff(ref[i, :t], out[i, :t].numpy()) for i, t in enumerate(out_lens.tolist())
    )
    tokens = torch.tensor([BLANK_ID, 5 % f.model.config.vocab_size, 7 % f.model.config.vocab_size])
    state_t = f.model.predictor.init_state(1)
    state_o = onnx.predictor.init_state(1)
    decoder = joiner = 0.0
    for tok in tokens:
        pred, state_t = f.model.predictor.step(tok[None], state_t)
        pred_t = f.model.joiner.pred_proj(pred)  # (1, J)
        pred_o, state_o = onnx.predictor.step(tok[None], state_o)
        decoder = max(decoder, _max_diff(pred_t, pred_o.numpy()))
        logits_t = f.model.joiner.joint(ref[:1, 0], pred_t)  # (1, V)
        logits_o = onnx.joiner.joint(ref[:1, 0], pred_o)
        joiner = max(joiner, _max_diff(logits_t, logits_o.numpy()))
    return {
        "encoder_max_abs_diff": encoder,
        "decoder_max_abs_diff": decoder,
        "joiner_max_abs_diff": joiner,
        "frames": lens.tolist(),
    }


def _write_graphs(f: ModelFile, folder: Path) -> dict:
    """The three graphs of ``f`` into ``folder``; returns what export.json records of them."""
    model, config = f.model, f.model.config
    x, lens = check_batch(f.cmvn)
    batch, time = "N", "T"
    export_graph(
        EncoderGraph(model, f.cmvn),
        (x, lens),
        folder / "encoder.onnx",
        {"inputs": ["x", "x_lens"], "outputs": ["encoder_out", "encoder_out_lens"]},
        {
            "x": {0: batch, 1: time},
            "x_lens": {0: batch},
            "encoder_out": {0: batch, 1: "T_out"},
            "encoder_out_lens": {0: batch},
        },
    )
    J = config.joiner_dim
    if config.predictor == "stateless":
        context = config.predictor_context
        y = torch.full((2, context), -1, dtype=torch.long)
        export_graph(
            StatelessDecoderGraph(model),
            (y,),
            folder / "decoder.onnx",
            {"inputs": ["y"], "outputs": ["decoder_out"]},
            {"y": {0: batch}, "decoder_out": {0: batch}},
        )
        _set_metadata(
            folder / "decoder.onnx", {"vocab_size": config.vocab_size, "context_size": context}
        )
    else:
        h, c = model.predictor.init_state(2)
        export_graph(
            LstmDecoderGraph(model),
            (torch.zeros(2, dtype=torch.long), h, c),
            folder / "decoder.onnx",
            {"inputs": ["y", "h", "c"], "outputs": ["decoder_out", "next_h", "next_c"]},
            {name: {0: batch} for name in ("y", "h", "c", "decoder_out", "next_h", "next_c")},
        )
        _set_metadata(folder / "decoder.onnx", {"vocab_size": config.vocab_size})
    export_graph(
        JoinerGraph(model),
        (torch.zeros(2, J), torch.zeros(2, J)),
        folder / "joiner.onnx",
        {"inputs": ["encoder_out", "decoder_out"], "outputs": ["logit"]},
        {"encoder_out": {0: batch}, "decoder_out": {0: batch}, "logit": {0: batch}},
    )
    _set_metadata(folder / "joiner.onnx", {"joiner_dim": J})
    return {
        "predictor": config.predictor,
        "context_size": config.predictor_context if config.predictor == "stateless" else None,
        "predictor_layers": config.predictor_layers,
        "predictor_dim": config.predictor_dim,
        "joiner_dim": J,
        "vocab_size": config.vocab_size,
        "blank_id": BLANK_ID,
        "subsampling": config.subsampling,
        "min_frames": Conv2dSubsampling.min_length(config.subsampling),
    }


def _write_tokens(tokenizer: Tokenizer, folder: Path) -> None:
    (folder / TOKENIZER).write_bytes(tokenizer.to_bytes())
    lines = [f"{tokenizer.id_to_piece(i)} {i}\n" for i in range(tokenizer.vocab_size)]
    (folder / "tokens.txt").write_text("".join(lines), encoding="utf-8")


def _write_decoding(decoding: Decoding, folder: Path) -> dict:
    """The LM's token sequences to ``LM_TOKENS``; returns export.json's ``decoding``."""
    if decoding.lm.order:
        lengths = np.array([len(s) for s in decoding.lm_sequences], dtype=np.int64)
        tokens = np.fromiter(
            (t for s in decoding.lm_sequences for t in s), dtype=np.int32, count=lengths.sum()
        )
        np.savez(folder / LM_TOKENS, tokens=tokens, lengths=lengths)
    return {"beam": decoding.beam, "lm": asdict(decoding.lm)}


def read_decoding(folder: str | os.PathLike, manifest: dict) -> Decoding | None:
    """The decoding an export carries (``export.json``'s ``decoding`` and its LM's token
    sequences), or None when it was exported without one."""
    record = manifest.get("decoding")
    if record is None:
        return None
    lm = settings_from_dict(LmSettings, record["lm"], f"{folder}/{MANIFEST}: decoding.lm")
    sequences: tuple[tuple[int, ...], ...] = ()
    if lm.order:
        with np.load(Path(folder) / LM_TOKENS) as data:
            tokens, lengths = data["tokens"].tolist(), data["lengths"]
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        sequences = tuple(tuple(tokens[a:b]) for a, b in zip(starts, ends, strict=True))
    return Decoding(int(record["beam"]), lm, sequences)


def export_model(
    model_path: str | os.PathLike,
    out: str | os.PathLike,
    int8: bool = False,
    beam: int = 0,
    lm: LmSettings = NO_LM,
    lm_text: str | os.PathLike | None = None,
) -> dict:
    """Export ``model_path`` to the folder ``out`` (replaced whole, never half written);
    returns export.json's content. The fp32 export is refused when it differs from
    PyTorch by more than ``MAX_FP32_DIFF``.

    ``beam``, ``lm`` and ``lm_text`` (what the n-gram is counted on): how the
    export decodes by default where it is used, as rule evaluate's full decoding; the
    n-gram's token sequences travel in the folder."""
    f = open_model_file(model_path)
    if lm.order and lm_text is None:
        raise AsrpruneError(f"a {lm.order}-gram LM needs the text it is counted on")
    sequences = () if lm.order == 0 else tuple(map(tuple, lm_sequences(lm_text, f.tokenizer)))
    decoding = Decoding(beam, lm, sequences)
    decoding.fusion(f.tokenizer.vocab_size)  # refuses an LM without beam search, early
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        graphs = _write_graphs(f, tmp)
        _write_tokens(f.tokenizer, tmp)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "source": str(model_path),
            "precision": "int8" if int8 else "fp32",
            "opset": OPSET,
            **graphs,
            "features": FEATURES,
            "architecture": architecture(f.model),
            "decoding": _write_decoding(decoding, tmp),
        }
        write_json(tmp / MANIFEST, manifest)  # the runtime the check uses reads it
        if not int8:
            check = check_export(f, tmp)
            worst = max(check[f"{name}_max_abs_diff"] for name in GRAPHS)
            if worst > MAX_FP32_DIFF:
                raise AsrpruneError(
                    f"ONNX export of {model_path} differs from PyTorch by {worst:.2e} "
                    f"(limit {MAX_FP32_DIFF:g}): {check}"
                )
        else:
            _quantize(tmp)
            check = check_export(f, tmp)
        manifest["check"] = check
        write_json(tmp / MANIFEST, manifest)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.replace(old / out.name)
            shutil.rmtree(old)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    """export.json of an exported folder, checked to be one."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise AsrpruneError(
            f"{folder} is a directory, not a model file, nor a folder asrprune export wrote "
            f"(no {MANIFEST} in it)"
        )
    manifest = read_json(path)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise AsrpruneError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}"
        )
    return manifest
