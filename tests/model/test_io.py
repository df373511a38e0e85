"""Model files: round trip, weights_only loading, clear errors."""

from __future__ import annotations

import pytest
import torch

from asrprune.data.features import Cmvn
from asrprune.errors import AsrpruneError
from asrprune.model import load_model, save_model
from tests.model.tiny import pruned_structure, tiny_batch, tiny_model

TOKENIZER = bytes(range(256)) * 3  # any bytes: the model file does not parse them


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
@pytest.mark.parametrize("structure", [None, pruned_structure()], ids=["full", "pruned"])
def test_round_trip_gives_identical_outputs(tmp_path, predictor, structure):
    model = tiny_model(predictor=predictor, structure=structure).eval()
    cmvn = Cmvn(torch.randn(80), torch.rand(80) + 0.5, frames=1234)
    path = tmp_path / "models" / "student.pt"
    save_model(path, model, TOKENIZER, cmvn.state_dict() | {"frames": 1234}, {"step": 7})
    assert [p.name for p in path.parent.iterdir()] == ["student.pt"]  # no temporary left

    # the file holds only tensors and plain values
    raw = torch.load(path, weights_only=True)
    assert raw["structure"] == model.structure.to_dict()
    assert raw["tokenizer"].dtype == torch.uint8

    saved = load_model(path)
    loaded, cmvn_state = saved.model, saved.cmvn
    assert not loaded.training
    assert loaded.structure == model.structure and loaded.config == model.config
    assert saved.tokenizer_bytes == TOKENIZER
    assert torch.equal(cmvn_state["mean"], cmvn.mean) and torch.equal(cmvn_state["std"], cmvn.std)
    assert cmvn_state["frames"] == 1234
    assert saved.extra == {"step": 7}
    batch = tiny_batch()
    with torch.no_grad():
        a, b = model(*batch, return_hidden=True), loaded(*batch, return_hidden=True)
    assert torch.equal(a.encoder_out, b.encoder_out)
    assert torch.equal(a.rnnt_loss, b.rnnt_loss) and torch.equal(a.ctc_loss, b.ctc_loss)


def test_cmvn_from_to_dict_and_empty_tokenizer(tmp_path):
    cmvn = Cmvn(torch.zeros(80), torch.ones(80), frames=5)
    save_model(tmp_path / "m.pt", tiny_model(), b"", cmvn.to_dict())
    saved = load_model(tmp_path / "m.pt")
    state = saved.cmvn
    assert torch.equal(state["std"], torch.ones(80)) and state["frames"] == 5
    assert state["per_utterance"] is False
    assert saved.tokenizer_bytes == b"" and saved.extra == {}


@pytest.mark.parametrize("given", ["dict", "module"])
def test_per_utterance_cmvn_travels_in_the_model_file(tmp_path, given):
    """A model trained on per-utterance normalised features must be fed them everywhere it
    is loaded (evaluation, pruning, speed, transcribe): the mode is part of the file."""
    cmvn = Cmvn(torch.randn(80), torch.rand(80) + 0.5, frames=9, per_utterance=True)
    save_model(tmp_path / "m.pt", tiny_model(), b"", cmvn.to_dict() if given == "dict" else cmvn)
    loaded = Cmvn.from_dict(load_model(tmp_path / "m.pt").cmvn)
    assert loaded.per_utterance and loaded.frames == 9
    x = torch.randn(30, 80)
    torch.testing.assert_close(loaded.apply(x), cmvn.apply(x))


def test_the_model_moves_to_its_device_and_cmvn_stays_on_the_cpu(tmp_path):
    """Features are normalised on the CPU before a batch moves to the model's device, so
    the CMVN must not follow the model (on a GPU that mix failed evaluation). The meta
    device stands in for a GPU on machines without one."""
    cmvn = Cmvn(torch.randn(80), torch.rand(80) + 0.5)
    save_model(tmp_path / "m.pt", tiny_model(), TOKENIZER, cmvn.to_dict())
    saved = load_model(tmp_path / "m.pt", map_location="meta")
    state = saved.cmvn
    assert {p.device.type for p in saved.model.parameters()} == {"meta"}
    assert state["mean"].device.type == state["std"].device.type == "cpu"
    assert torch.equal(state["mean"], cmvn.mean) and saved.tokenizer_bytes == TOKENIZER


def test_extra_must_be_json_safe(tmp_path):
    with pytest.raises(AsrpruneError, match="not JSON-safe"):
        save_model(tmp_path / "m.pt", tiny_model(), b"x", Cmvn.identity().to_dict(), {"t": {1, 2}})
    assert not (tmp_path / "m.pt").exists()


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(AsrpruneError, match="model file not found: .*missing.pt"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(AsrpruneError, match=f"{tmp_path} is a directory, not a model file"):
        load_model(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    expected = r"\(expected a model file the workflow writes under results/<run>/models/\)"
    with pytest.raises(AsrpruneError, match=f"{bad} is not an asrprune model file {expected}"):
        load_model(bad)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(AsrpruneError, match=f"foreign.pt is not an asrprune model file {expected}"):
        load_model(tmp_path / "foreign.pt")


def test_weights_that_do_not_fit_the_structure_are_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_model(path, tiny_model(), b"x", Cmvn.identity().to_dict())
    payload = torch.load(path, weights_only=True)
    payload["structure"] = pruned_structure().to_dict()
    torch.save(payload, path)
    with pytest.raises(AsrpruneError, match="do not fit its config and structure"):
        load_model(path)
