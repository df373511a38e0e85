"""Evaluation: WER arithmetic, the JSON and hypothesis files, the model's own CMVN, MLflow."""

from __future__ import annotations

import json
import time

import pytest
import torch

from asrprune.data.features import Cmvn, FeatureStore
from asrprune.errors import AsrpruneError
from asrprune.evaluate import (
    LmSettings,
    evaluate_model,
    transcript_lm,
    word_errors,
)
from asrprune.io import read_json
from asrprune.model import Transducer, save_model
from asrprune.train import resolve_model_config
from tests.builders import dead_server_ids
from tests.builders_model import overfit_model, tiny_model_config, tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tone_corpus(tmp_path_factory.mktemp("corpus"))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_word_errors_on_fixed_strings():
    e = word_errors(["A B C D", "E F"], ["A X C", "E F G"])
    assert (e.substitutions, e.deletions, e.insertions, e.hits) == (1, 1, 1, 4)
    assert e.ref_words == 6 and e.utterances == 2 and e.wer == pytest.approx(50.0)
    assert word_errors(["A B"], [""]).wer == 100.0  # empty hypothesis: all deleted
    assert word_errors(["A"], ["B C D"]).wer == 300.0  # insertions can pass 100%
    with pytest.raises(AsrpruneError, match="2 references but 1 hypotheses"):
        word_errors(["A", "B"], ["A"])
    with pytest.raises(AsrpruneError, match="empty"):
        word_errors(["A", " "], ["A", "B"])


def test_known_hypotheses_give_the_expected_json_and_files(corpus, tmp_path, monkeypatch):
    """Decoding replaced by a table, so every error is known; features checked on the way."""
    config = resolve_model_config(tiny_model_config(), corpus.tokenizer)
    torch.manual_seed(0)
    model = Transducer(config)
    # the model file's CMVN differs from the corpus's: evaluation must use the file's
    cmvn = Cmvn(torch.full((80,), 3.0), torch.full((80,), 2.0))
    save_model(tmp_path / "m.pt", model, corpus.tokenizer.to_bytes(), cmvn.to_dict())

    texts = {u.id: u.text for d in corpus.datasets() for u in d.utts}
    hyps = dict(texts)
    hyps["train-01"] = "THREE FIVE"  # THREE FOUR FIVE: one deletion
    hyps["train-02"] = "SIX ONE ONE"  # one insertion
    hyps["train-03"] = "TWO TWO"  # TWO THREE: one substitution
    hyps["dev-00"] = ""  # ONE FOUR: two deletions
    store = FeatureStore(corpus.train_store)
    seen = []

    def fake_decode(model, batch, ways):
        for b, uid in enumerate(batch.ids):
            if uid in store:
                T = int(batch.feat_lens[b])
                expected = (store[uid] - 3.0) / 2.0
                torch.testing.assert_close(batch.feats[b, :T], expected)
            seen.append(uid)
        assert list(ways) == [(0, None)]  # greedy search only
        return [([corpus.tokenizer.encode(hyps[uid]) for uid in batch.ids], 0.1)]

    monkeypatch.setattr("asrprune.decode.decode_batch", fake_decode)
    result = evaluate_model(
        tmp_path / "m.pt",
        {
            "train": (corpus.train_manifest, corpus.train_store),
            "dev": (corpus.dev_manifest, corpus.dev_store),
        },
        tmp_path / "eval.json",
        tmp_path / "hyps",
        batch_frames=200,
        name="teacher",
    )
    assert sorted(seen) == sorted(texts)
    train_words = sum(len(t.split()) for k, t in texts.items() if k.startswith("train"))
    assert result["wer"]["train"] == pytest.approx(100 * 3 / train_words)
    assert result["wer"]["dev"] == pytest.approx(100 * 2 / 7)
    assert result["errors"]["train"] | {"wer": 0} == {
        "wer": 0,
        "substitutions": 1,
        "deletions": 1,
        "insertions": 1,
        "hits": train_words - 2,
        "ref_words": train_words,
        "utterances": 8,
        "skipped": 0,
    }
    counts = model.param_counts()
    assert result["encoder_params"] == counts.encoder
    assert result["prunable_params"] == counts.prunable
    assert result["size_mb"] == pytest.approx(counts.encoder * 4 / 1e6)
    assert result["decoding"]["method"] == "greedy"
    assert read_json(tmp_path / "eval.json") == result

    rows = read_jsonl(tmp_path / "hyps" / "train.jsonl")
    assert [r["id"] for r in rows] == [f"train-{i:02d}" for i in range(8)]  # manifest order
    assert rows[1] == {"id": "train-01", "ref": "THREE FOUR FIVE", "hyp": "THREE FIVE"}
    assert read_jsonl(tmp_path / "hyps" / "dev.jsonl")[0]["hyp"] == ""


def test_a_trained_model_decodes_and_logs_to_mlflow(tmp_path, monkeypatch):
    import mlflow

    from asrprune.tracking import init_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ids = init_tracking(tmp_path / "mlflow.db", "test", "run", tmp_path / "ids.json")
    model_path, corpus = overfit_model()
    splits = {"train": (corpus.train_manifest, corpus.train_store)}
    greedy = evaluate_model(
        model_path,
        splits,
        tmp_path / "greedy.json",
        tmp_path / "greedy",
        mlflow_ids=tmp_path / "ids.json",
        name="teacher",
        tags={"method": "none"},
    )
    rows = read_jsonl(tmp_path / "greedy" / "train.jsonl")
    recomputed = word_errors([r["ref"] for r in rows], [r["hyp"] for r in rows])
    assert greedy["wer"]["train"] == pytest.approx(recomputed.wer)
    assert greedy["wer"]["train"] < 6  # it has learned its training set: one word wrong at most
    assert greedy["model_extra"]["stage"] == "teacher"

    beam = evaluate_model(model_path, splits, tmp_path / "beam.json", tmp_path / "beam", beam=3)
    # greedy search first, the same for every model; the beam search beside it
    assert beam["decoding"] == greedy["decoding"] and beam["wer"] == greedy["wer"]
    assert read_jsonl(tmp_path / "beam/train.jsonl") == rows
    assert len(read_jsonl(tmp_path / "beam/full/train.jsonl")) == len(rows)
    assert beam["full"]["decoding"] | {"batch_frames": 0} == {
        "method": "beam",
        "beam": 3,
        "max_symbols_per_frame": 1,
        "batch_frames": 0,
        "cmvn": "model",
        "lm": None,
    }
    # one symbol per frame: the 5 letters of THREE in 5 encoder frames are a squeeze
    assert beam["full"]["wer"]["train"] < 40
    # the workflow's grid models: greedy search only
    only = evaluate_model(
        model_path, splits, tmp_path / "only.json", tmp_path / "only", beam=3, full=False
    )
    assert "full" not in only and only["wer"] == greedy["wer"]
    assert not (tmp_path / "only/full").exists()

    mlflow.set_tracking_uri(ids["tracking_uri"])
    runs = mlflow.search_runs([ids["experiment_id"]], filter_string="tags.stage = 'evaluate'")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["tags.model"] == "teacher" and run["tags.method"] == "none"
    assert run["tags.mlflow.parentRunId"] == ids["parent_run_id"]
    assert run["metrics.wer.train"] == pytest.approx(greedy["wer"]["train"])
    assert run["metrics.encoder_params"] == greedy["encoder_params"]


def test_a_dead_tracking_server_costs_seconds_not_the_results(tmp_path, capfd):
    import mlflow

    from asrprune.tracking import sync_spool

    ids_file = dead_server_ids(tmp_path)
    uri = read_json(ids_file)["tracking_uri"]
    model_path, corpus = overfit_model()
    splits = {"train": (corpus.train_manifest, corpus.train_store)}
    out = tmp_path / "metrics" / "teacher.json"
    started = time.monotonic()
    result = evaluate_model(
        model_path, splits, out, tmp_path / "hyps", mlflow_ids=ids_file, name="teacher"
    )
    assert time.monotonic() - started < 60
    assert read_json(out) == result
    assert f"warning: MLflow tracking at {uri} failed (creating the run" in capfd.readouterr().err
    (spool,) = (tmp_path / "mlflow" / "spool").glob("evaluate-teacher-*.jsonl")

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync_spool(ids_file, store)
    client = mlflow.MlflowClient(store)
    exp = client.get_experiment_by_name("asrprune-test")
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'evaluate'")
    (parent,) = client.search_runs([exp.experiment_id], "tags.stage = 'workflow'")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.params["model_path"] == str(model_path)
    assert run.data.metrics["wer.train"] == pytest.approx(result["wer"]["train"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["teacher.json"]
    assert not spool.exists() and spool.with_name(spool.name + ".synced").exists()


def test_lm_fusion_is_recorded_and_neutral_at_weight_zero(tmp_path):
    model_path, corpus = overfit_model()
    splits = {"train": (corpus.train_manifest, corpus.train_store)}

    def run(name, lm, beam=3):
        return evaluate_model(
            model_path,
            splits,
            tmp_path / f"{name}.json",
            tmp_path / name,
            beam=beam,
            lm=lm,
            lm_text=corpus.train_manifest,
        )

    plain = run("plain", LmSettings())
    neutral = run("neutral", LmSettings(order=3, weight=0.0, token_bonus=0.0))
    fused = run("fused", LmSettings(order=3))
    assert plain["full"]["decoding"]["lm"] is None
    assert read_jsonl(tmp_path / "neutral/full/train.jsonl") == read_jsonl(
        tmp_path / "plain/full/train.jsonl"
    )
    assert neutral["full"]["wer"] == plain["full"]["wer"]
    assert fused["full"]["decoding"]["lm"] == {
        "order": 3,
        "weight": 0.2,
        "token_bonus": 0.9,
        "discount": 0.7,
        "text": str(corpus.train_manifest),
    }
    # an LM of the very transcripts it decodes can only help an over-fitted model
    assert fused["full"]["wer"]["train"] <= plain["full"]["wer"]["train"]

    with pytest.raises(AsrpruneError, match="needs beam search"):
        run("greedy", LmSettings(order=3), beam=0)
    with pytest.raises(AsrpruneError, match="needs the text it is counted on"):
        evaluate_model(
            model_path, splits, tmp_path / "x.json", tmp_path / "x", beam=3, lm=LmSettings(order=3)
        )
    with pytest.raises(AsrpruneError, match="lm order"):
        LmSettings(order=-1)
    assert transcript_lm(corpus.train_manifest, None, LmSettings(), 3) is None  # order 0: no LM


def test_missing_model_or_splits_are_clear_errors(tmp_path, corpus):
    with pytest.raises(AsrpruneError, match="no split"):
        evaluate_model(tmp_path / "m.pt", {}, tmp_path / "e.json", tmp_path / "h")
    with pytest.raises(AsrpruneError, match="model file not found"):
        evaluate_model(
            tmp_path / "m.pt",
            {"dev": (corpus.dev_manifest, corpus.dev_store)},
            tmp_path / "e.json",
            tmp_path / "h",
        )
    assert not (tmp_path / "e.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_evaluation_gives_the_cpu_hypotheses(tmp_path):
    model_path, corpus = overfit_model()
    splits = {"train": (corpus.train_manifest, corpus.train_store)}
    runs = {
        device: evaluate_model(
            model_path, splits, tmp_path / f"{device}.json", tmp_path / device, device=device
        )
        for device in ("cpu", "cuda")
    }
    assert read_jsonl(tmp_path / "cuda" / "train.jsonl") == read_jsonl(
        tmp_path / "cpu" / "train.jsonl"
    )
    assert runs["cuda"]["wer"] == runs["cpu"]["wer"]
