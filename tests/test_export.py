"""ONNX export: the graphs compute what PyTorch computes, decode alike, and load elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asrprune.cli import main
from asrprune.deploy.export import MANIFEST, check_batch, export_model
from asrprune.deploy.runtime import OnnxTransducer
from asrprune.deploy.sherpa import sherpa_recognizer
from asrprune.errors import AsrpruneError
from asrprune.evaluate import evaluate_model
from asrprune.io import read_jsonl
from asrprune.lm import NO_LM, LmSettings, lm_sequences
from asrprune.model.decoding import search
from asrprune.model_file import open_model_file
from asrprune.transcribe import transcribe
from tests.builders_model import TRAIN_TEXTS, overfit_model, random_model_file, write_tone_words


def _float_bytes(path) -> int:
    """Bytes of an ONNX file's float32 initialisers (its fp32 weights)."""
    import onnx
    from onnx import numpy_helper

    arrays = (numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer)
    return sum(a.nbytes for a in arrays if a.dtype == np.float32)


def _torch_encoder(f, x, lens):
    """The PyTorch encoder on ``x`` normalised per utterance, as the data pipeline does."""
    normed = torch.zeros_like(x)
    for i, t in enumerate(lens.tolist()):
        normed[i, :t] = f.cmvn.apply(x[i, :t])
    return f.model.encoder(normed, lens)[:2]


@pytest.mark.parametrize("variant", ["stateless", "lstm-pruned", "svd"])
def test_export_equals_pytorch_on_other_shapes_and_decodes_alike(tmp_path, variant):
    path = random_model_file(tmp_path / "m.pt", variant)
    manifest = export_model(path, tmp_path / "onnx")
    assert manifest["precision"] == "fp32"
    assert manifest["check"]["encoder_max_abs_diff"] < 1e-4
    f, onnx = open_model_file(path), OnnxTransducer(tmp_path / "onnx")
    # batches of other sizes and lengths than the export traced
    for frames in [(57,), (400, 250, 33, 90)]:
        x, lens = check_batch(f.cmvn, frames, seed=len(frames))
        enc, enc_lens = _torch_encoder(f, x, lens)
        out, out_lens, _ = onnx.encoder(x, lens)
        assert torch.equal(out_lens, enc_lens)
        projected = f.model.joiner.enc_proj(enc)
        for i, t in enumerate(enc_lens.tolist()):
            torch.testing.assert_close(out[i, :t], projected[i, :t], atol=1e-4, rtol=0)
        for beam in (0, 3):
            ids = search(onnx, out, out_lens, beam)
            assert ids == search(f.model, enc, enc_lens, beam)
            assert sum(map(len, ids)) > 0  # a random model emits tokens: the check has teeth
    if variant == "lstm-pruned":
        with pytest.raises(AsrpruneError, match="stateless predictor only"):
            sherpa_recognizer(tmp_path / "onnx")
        # hidden subsets are one-hot products in the graph, no gather or scatter on the
        # last axis (scripts/bench_gather_scatter.py); their one-hot matrices are constants
        import onnx as onnx_graphs

        assert any(b.hidden is not None for b in f.model.structure.blocks)
        graph = onnx_graphs.load(str(tmp_path / "onnx/encoder.onnx")).graph
        ops = {n.op_type for n in graph.node}
        assert not ops & {"ScatterElements", "ScatterND", "OneHot"}
        # hidden subsets are gathered on the middle axis of the transposed stream
        gathers = [n for n in graph.node if n.op_type == "Gather"]
        axes = {a.i for n in gathers for a in n.attribute if a.name == "axis"}
        assert 1 in axes and not axes & {2, -1}, axes


def test_int8_export_is_smaller_and_decodes(tmp_path):
    path = random_model_file(tmp_path / "m.pt", "stateless")
    export_model(path, tmp_path / "fp32")
    manifest = export_model(path, tmp_path / "int8", int8=True)
    assert manifest["precision"] == "int8" and manifest["check"]["encoder_max_abs_diff"] > 0
    # the weights shrink 4x; the graph around them (node names, shape arithmetic) does not
    floats = {p: _float_bytes(tmp_path / p / "encoder.onnx") for p in ("fp32", "int8")}
    assert floats["int8"] < 0.1 * floats["fp32"]
    onnx = OnnxTransducer(tmp_path / "int8")
    x, lens = check_batch(open_model_file(path).cmvn, (120, 80))
    out, out_lens, _ = onnx.encoder(x, lens)
    assert len(search(onnx, out, out_lens, 0)) == 2


def test_session_settings_reach_onnx_runtime_and_do_not_change_the_decode(tmp_path):
    path = random_model_file(tmp_path / "m.pt", "stateless")
    export_model(path, tmp_path / "onnx")
    plain = OnnxTransducer(tmp_path / "onnx", 2, search_threads=2, spinning=True)
    tuned = OnnxTransducer(tmp_path / "onnx", 2)  # the defaults: search on 1, no spinning
    sessions = (tuned.encoder.session, tuned.predictor.session, tuned.joiner.session)
    options = [s.get_session_options() for s in sessions]
    assert [o.intra_op_num_threads for o in options] == [2, 1, 1]
    spin = "session.intra_op.allow_spinning"
    assert [o.get_session_config_entry(spin) for o in options] == ["0"] * 3
    assert plain.predictor.session.get_session_options().intra_op_num_threads == 2
    x, lens = check_batch(open_model_file(path).cmvn, (120, 80))
    out, out_lens, _ = tuned.encoder(x, lens)
    ref, ref_lens, _ = plain.encoder(x, lens)
    for beam in (0, 3):
        assert search(tuned, out, out_lens, beam) == search(plain, ref, ref_lens, beam)


def test_export_replaces_the_folder_whole_and_a_plain_folder_is_refused(tmp_path):
    path = random_model_file(tmp_path / "m.pt", "stateless")
    export_model(path, tmp_path / "out" / "onnx")
    (tmp_path / "out" / "onnx" / "stale.txt").write_text("from before")
    export_model(path, tmp_path / "out" / "onnx")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["onnx"]  # no temp left
    assert not (tmp_path / "out" / "onnx" / "stale.txt").exists()
    with pytest.raises(AsrpruneError, match=MANIFEST):
        OnnxTransducer(tmp_path / "out")
    x, lens = check_batch(open_model_file(path).cmvn, (6,))
    with pytest.raises(AsrpruneError, match="too short"):
        OnnxTransducer(tmp_path / "out" / "onnx").encoder(x, lens)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The trained toy model (stateless predictor) and its export, via the command line."""
    model_path = overfit_model()[0]
    folder = tmp_path_factory.mktemp("export") / "onnx"
    assert main(["export", "--model", str(model_path), "--out", str(folder)]) == 0
    return model_path, folder


# utterances of training transcripts with new noise, which the toy model transcribes
HEARD = ((1, 1), (4, 123))  # (TRAIN_TEXTS index, noise seed), as tests/test_transcribe.py


def _heard(tmp_path):
    return [write_tone_words(tmp_path / f"{i}.wav", TRAIN_TEXTS[i], seed=s) for i, s in HEARD]


def test_transcribe_an_exported_folder_as_therandom_model_file(exported, tmp_path):
    model_path, folder = exported
    wavs = _heard(tmp_path)
    expected = [(str(w), TRAIN_TEXTS[i]) for w, (i, _) in zip(wavs, HEARD, strict=True)]
    assert transcribe(model_path, wavs) == expected
    assert transcribe(folder, wavs) == expected
    assert transcribe(folder, wavs, beam=3) == transcribe(model_path, wavs, beam=3)


def test_sherpa_onnx_decodes_the_stateless_export(exported, tmp_path):
    _, folder = exported
    recognizer = sherpa_recognizer(folder)
    for wav, (i, _) in zip(_heard(tmp_path), HEARD, strict=True):
        samples, rate = sf.read(wav, dtype="float32")
        stream = recognizer.create_stream()
        stream.accept_waveform(rate, np.ascontiguousarray(samples))
        recognizer.decode_stream(stream)
        assert stream.result.text.strip() == TRAIN_TEXTS[i]


def test_evaluate_an_exported_folder_as_therandom_model_file(exported, tmp_path):
    model_path, folder = exported
    corpus = overfit_model()[1]
    splits = {"train": (corpus.train_manifest, corpus.train_store)}
    ref = evaluate_model(model_path, splits, tmp_path / "t.json", tmp_path / "t", beam=3)
    got = evaluate_model(folder, splits, tmp_path / "o.json", tmp_path / "o", beam=3)
    assert read_jsonl(tmp_path / "o/train.jsonl") == read_jsonl(tmp_path / "t/train.jsonl")
    assert read_jsonl(tmp_path / "o/full/train.jsonl") == read_jsonl(
        tmp_path / "t/full/train.jsonl"
    )
    for key in ("wer", "encoder_params", "total_params", "encoder_flops", "sparsity", "structure"):
        assert got[key] == ref[key], key
    assert got["export"]["precision"] == "fp32" and got["export"]["onnx_mb"] > 0
    assert "export" not in ref


def test_an_export_carries_its_decoding_and_transcribe_uses_it(exported, tmp_path):
    model_path, _ = exported
    corpus = overfit_model()[1]
    lm = LmSettings(order=3, weight=0.3, token_bonus=0.5)
    folder = tmp_path / "decoding"
    export_model(model_path, folder, beam=3, lm=lm, lm_text=corpus.train_manifest)
    f = open_model_file(folder)
    assert (f.decoding.beam, f.decoding.lm) == (3, lm)
    assert f.decoding.lm_sequences == tuple(
        map(tuple, lm_sequences(corpus.train_manifest, f.tokenizer))
    )
    wavs = _heard(tmp_path)
    as_evaluated = transcribe(model_path, wavs, beam=3, lm=lm, lm_text=corpus.train_manifest)
    assert transcribe(folder, wavs) == as_evaluated  # by default, as evaluation decodes
    # a user still chooses otherwise: greedy, or the beam without the LM
    assert transcribe(folder, wavs, beam=0) == transcribe(model_path, wavs, beam=0)
    assert transcribe(folder, wavs, lm=NO_LM) == transcribe(model_path, wavs, beam=3)
    # a model file carries none: greedy without an LM, as before
    assert open_model_file(model_path).decoding is None


def test_an_lm_without_beam_search_or_text_is_refused_before_exporting(exported, tmp_path):
    model_path, _ = exported
    corpus = overfit_model()[1]
    with pytest.raises(AsrpruneError, match="needs beam search"):
        export_model(
            model_path, tmp_path / "a", lm=LmSettings(order=3), lm_text=corpus.train_manifest
        )
    with pytest.raises(AsrpruneError, match="needs the text it is counted on"):
        export_model(model_path, tmp_path / "b", beam=3, lm=LmSettings(order=3))
    assert not list(tmp_path.iterdir())
    wav = str(_heard(tmp_path)[0])
    assert main(["transcribe", "--model", str(model_path), "--lm", "{}", "--no-lm", wav]) == 2
