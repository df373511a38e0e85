"""The trainer: learning, exact resume after a kill, NaN stops, atomic checkpoints, MLflow."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from asrprune.config import settings_from_dict
from asrprune.data.batching import Batch
from asrprune.device import has_native_bf16
from asrprune.distill import LayerwiseDistill
from asrprune.errors import AsrpruneError
from asrprune.io import read_json
from asrprune.model import ModelConfig, Transducer, load_model
from asrprune.pruning.l0 import GateKinds, L0Settings, Lagrangian, gated_student, param_groups
from asrprune.train import (
    CHECKPOINT,
    HISTORY,
    Trainer,
    TrainSettings,
    TransducerLoss,
    resolve_model_config,
    train,
    train_teacher,
)
from tests.builders import dead_server_ids
from tests.builders_model import (
    Killed,
    dying_at,
    teacher_data,
    tiny_model_config,
    tiny_settings,
    tone_corpus,
)
from tests.model.tiny import tiny_batch, tiny_model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tone_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def data(corpus):
    return corpus.datasets()


def new_model(corpus, seed=0, **overrides) -> Transducer:
    config = resolve_model_config(tiny_model_config(**overrides), corpus.tokenizer)
    torch.manual_seed(seed)
    return Transducer(config)


def without_timing(history: dict) -> dict:
    return {
        "train": [{k: v for k, v in row.items() if k != "steps_per_s"} for row in history["train"]],
        "dev": history["dev"],
    }


# -----------------------------------------------------------------------------
# settings and schedules


def test_settings_refuse_unknown_keys_and_bad_values():
    with pytest.raises(AsrpruneError, match="unknown key 'max_step'"):
        settings_from_dict(TrainSettings, {"max_step": 3}, "teacher.train")
    with pytest.raises(AsrpruneError, match=r"train\.max_frames: expected an integer >= 1"):
        TrainSettings(max_frames=0)
    with pytest.raises(AsrpruneError, match=r"train\.final_lr_ratio"):
        TrainSettings(final_lr_ratio=1.5)
    with pytest.raises(AsrpruneError, match=r"train\.vtlp_range: expected a number in \[0, 0\.5\)"):
        TrainSettings(vtlp_range=0.5)
    assert settings_from_dict(TrainSettings, '{"max_steps": 3}', "t").max_steps == 3


def test_lr_schedule_warms_up_then_decays_to_the_final_ratio():
    s = TrainSettings(max_steps=100, warmup_steps=10, peak_lr=1.0, final_lr_ratio=0.1)
    lrs = [s.lr_factor(i) for i in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(lrs[10:]))  # decays after warm-up
    assert s.lr_factor(100) == pytest.approx(0.1) and s.lr_factor(500) == pytest.approx(0.1)
    assert s.ctc_weight(2000) == 1.0 and s.ctc_weight(2001) == 0.3
    assert not s.specaug_on(4000) and s.specaug_on(4001)


# -----------------------------------------------------------------------------
# learning


def test_loss_falls_on_a_tiny_overfitted_set(corpus, data, tmp_path):
    settings = tiny_settings(max_steps=60, log_every=10, eval_every=0, specaug_start_step=60)
    result = train(
        new_model(corpus), data[0], None, settings, tmp_path / "run", threads=2, progress=False
    )
    rows = result.history["train"]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert rows[-1]["rnnt_loss"] < 0.5 * rows[0]["rnnt_loss"]
    assert rows[-1]["ctc_loss"] < 0.8 * rows[0]["ctc_loss"]
    assert rows[0]["ctc_weight"] == pytest.approx((4 * 1.0 + 6 * 0.3) / 10)  # switch at step 4
    assert all(math.isfinite(r["grad_norm"]) and r["lr"] > 0 for r in rows)
    assert read_json(tmp_path / "run" / HISTORY) == result.history
    assert result.step == 60 and result.resumed_from is None


def test_the_banded_rnnt_loss_learns_and_its_additive_joiner_is_checkpointed(
    corpus, data, tmp_path
):
    """Pruned RNN-T on the tiny set: both losses fall, the full loss on dev is finite, the
    additive joiner trains and travels in the checkpoint, not in the model."""
    settings = tiny_settings(
        max_steps=60,
        log_every=10,
        eval_every=60,
        specaug_start_step=60,
        rnnt_band=2,
        rnnt_band_warmup_steps=10,
    )
    model = new_model(corpus)
    trainer = Trainer(model, data[0], data[1], settings, tmp_path / "run", threads=2)
    simple = trainer.extra_modules["simple_joiner"]
    before = simple.am.weight.detach().clone()
    result = trainer.run(progress=False)
    rows = result.history["train"]
    assert rows[-1]["rnnt_loss"] < 0.5 * rows[0]["rnnt_loss"]
    assert rows[-1]["simple_loss"] < 0.8 * rows[0]["simple_loss"]
    assert not torch.equal(simple.am.weight, before)
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert any(k.startswith("extra.simple_joiner") for k in state["modules"])
    assert not any("simple" in k for k in model.state_dict())
    assert math.isfinite(result.history["dev"][-1]["rnnt_loss"])
    with pytest.raises(AsrpruneError, match="rnnt_band"):
        Trainer(
            new_model(corpus),
            data[0],
            None,
            settings,
            tmp_path / "other",
            loss_fn=TransducerLoss(settings, simple),
        )


# -----------------------------------------------------------------------------
# resume


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
def test_resume_after_kill_equals_an_uninterrupted_run(corpus, data, tmp_path, workers):
    # dropout and SpecAugment on, a CTC switch, dev evaluations: every source of randomness
    settings = tiny_settings(
        max_steps=9,
        checkpoint_every=3,
        log_every=2,
        eval_every=4,
        specaug_start_step=1,
        num_workers=workers,  # a worker prefetches: the sampler runs ahead of the steps
    )
    train_data, dev_data = data

    def run(out_dir, loss_fn=None, seed=0):
        model = new_model(corpus, seed=seed, dropout=0.1)
        trainer = Trainer(
            model, train_data, dev_data, settings, out_dir, loss_fn=loss_fn, threads=2
        )
        return trainer, trainer.run(progress=False)

    whole, whole_result = run(tmp_path / "whole")

    with pytest.raises(Killed):  # mid-run, two steps after the checkpoint at step 3
        run(tmp_path / "killed", dying_at(5, settings))
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["step"] == 3

    # a fresh process: new model (other initial weights), new trainer, same out_dir
    resumed, resumed_result = run(tmp_path / "killed", seed=99)
    assert resumed_result.resumed_from == 3 and resumed_result.step == 9
    for (name, a), (_, b) in zip(
        whole.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)
    for a, b in zip(whole.optimizer.state.values(), resumed.optimizer.state.values(), strict=True):
        torch.testing.assert_close(b["exp_avg_sq"], a["exp_avg_sq"], atol=1e-6, rtol=1e-5)
    assert (resumed.epoch, resumed.position) == (whole.epoch, whole.position)
    assert without_timing(resumed_result.history) == without_timing(whole_result.history)
    assert [p["step"] for p in whole_result.history["dev"]] == [4, 8, 9]


def test_a_finished_run_resumes_to_nothing_and_more_steps_continue(corpus, data, tmp_path):
    settings = tiny_settings(max_steps=4, eval_every=0)
    first = train(new_model(corpus), data[0], None, settings, tmp_path, progress=False)
    again = train(new_model(corpus, seed=5), data[0], None, settings, tmp_path, progress=False)
    assert again.resumed_from == 4 and again.history == first.history
    longer = TrainSettings(**{**settings.to_dict(), "max_steps": 6})
    more = train(new_model(corpus), data[0], None, longer, tmp_path, progress=False)
    assert more.resumed_from == 4 and more.step == 6


def test_a_checkpoint_of_another_model_is_refused(corpus, data, tmp_path):
    settings = tiny_settings(max_steps=2, eval_every=0)
    train(new_model(corpus), data[0], None, settings, tmp_path, progress=False)
    other = new_model(corpus, d_model=16)
    with pytest.raises(AsrpruneError, match="written for another model"):
        train(other, data[0], None, settings, tmp_path, progress=False)


# -----------------------------------------------------------------------------
# failures


def test_nan_loss_stops_naming_step_and_utterances(corpus, data, tmp_path):
    seen = {}

    def loss_fn(model, batch, step):
        out = model(batch.feats, batch.feat_lens, batch.tokens, batch.token_lens)
        if step == 3:
            seen["ids"] = batch.ids
            return out.rnnt_loss * float("nan"), {}
        return out.rnnt_loss, {}

    settings = tiny_settings(max_steps=5, eval_every=0)
    with pytest.raises(AsrpruneError, match="loss is nan at step 3") as err:
        train(new_model(corpus), data[0], None, settings, tmp_path, loss_fn=loss_fn, progress=False)
    assert seen["ids"] and all(i in str(err.value) for i in seen["ids"])


def test_checkpoints_are_written_atomically(corpus, data, tmp_path, monkeypatch):
    settings = tiny_settings(max_steps=2, checkpoint_every=2, eval_every=0)
    train(new_model(corpus), data[0], None, settings, tmp_path, progress=False)
    good = (tmp_path / CHECKPOINT).read_bytes()

    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        real_save({"partial": torch.zeros(10)}, f)  # half a file on disk, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_then_die)
    longer = TrainSettings(**{**settings.to_dict(), "max_steps": 4})
    with pytest.raises(OSError, match="disk full"):
        train(new_model(corpus), data[0], None, longer, tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, HISTORY]

    # a save killed outright leaves a temporary file; the next start removes it
    monkeypatch.setattr(torch, "save", real_save)
    (tmp_path / f".{CHECKPOINT}.abc123.tmp").write_bytes(b"half")
    result = train(new_model(corpus), data[0], None, longer, tmp_path, progress=False)
    assert result.resumed_from == 2 and result.step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, HISTORY]


# -----------------------------------------------------------------------------
# hooks for pruning: extra modules, own parameter groups, extra loss terms


class Gates(nn.Module):
    def __init__(self):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(4))
        self.lam = nn.Parameter(torch.zeros(1))


def test_extra_modules_and_param_groups_are_optimised_and_checkpointed(corpus, data, tmp_path):
    settings = tiny_settings(max_steps=4, checkpoint_every=4, eval_every=0)
    gates = Gates()
    base = TransducerLoss(settings)

    def loss_fn(model, batch, step):
        loss, metrics = base(model, batch, step)
        violation = torch.sigmoid(gates.log_alpha).mean() - 0.25
        penalty = gates.lam[0] * violation  # lambda is maximised, the gates minimise
        return loss + penalty, {**metrics, "violation": float(violation.detach())}

    groups = [
        {"params": [gates.log_alpha], "lr": 0.1, "weight_decay": 0.0},
        {"params": [gates.lam], "lr": 0.01, "maximize": True, "scheduled": False},
    ]
    trainer = Trainer(
        new_model(corpus), data[0], None, settings, tmp_path, loss_fn=loss_fn,
        extra_modules={"gates": gates}, param_groups=groups,
    )  # fmt: skip
    trainer.run(progress=False)
    assert float(gates.lam.detach()) > 0  # ascended: the violation is positive
    assert float(gates.log_alpha.detach().mean()) < 0  # descended
    assert trainer.optimizer.param_groups[-1]["lr"] == 0.01  # constant, not scheduled
    assert "violation" in trainer.history["train"][0]
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    torch.testing.assert_close(state["modules"]["extra.gates"]["lam"], gates.lam.detach())

    fresh = Gates()
    again = Trainer(
        new_model(corpus, seed=3), data[0], None, settings, tmp_path,
        extra_modules={"gates": fresh},
        param_groups=[
            {"params": [fresh.log_alpha], "lr": 0.1, "weight_decay": 0.0},
            {"params": [fresh.lam], "lr": 0.01, "maximize": True, "scheduled": False},
        ],
    )  # fmt: skip
    assert again.resume() and torch.equal(fresh.lam, gates.lam)

    with pytest.raises(AsrpruneError, match="neither in the model nor in extra_modules"):
        Trainer(
            new_model(corpus), data[0], None, settings, tmp_path / "x",
            param_groups=[{"params": [nn.Parameter(torch.zeros(1))]}],
        )  # fmt: skip


def test_clipping_covers_the_model_weights_only(corpus, data, tmp_path):
    """A huge gate gradient neither enters the clipped norm nor is clipped itself."""
    settings = tiny_settings(grad_clip=1.0, eval_every=0)
    l0 = L0Settings()
    batch = next(iter(Trainer(new_model(corpus), data[0], None, settings, tmp_path)._batches()))
    steps = {}
    for scale in (0.0, 1e6):
        student = gated_student(new_model(corpus), GateKinds())
        lagrangian, distill = Lagrangian(), LayerwiseDistill(2, student.config.d_model)
        base = TransducerLoss(settings)

        def loss_fn(model, batch, step, scale=scale, base=base):
            loss, metrics = base(model, batch, step)
            gates = torch.cat([g.log_alpha for g in model.encoder.gates()])
            return loss + scale * gates.sum(), metrics

        trainer = Trainer(
            student, data[0], None, settings, tmp_path / str(scale), loss_fn=loss_fn,
            extra_modules={"lagrangian": lagrangian, "distill": distill},
            param_groups=param_groups(student, lagrangian, l0),
        )  # fmt: skip
        gates = {id(g.log_alpha) for g in student.encoder.gates()}
        weights = [p for p in student.parameters() if id(p) not in gates]
        assert {id(p) for p in trainer.clipped} == {id(p) for p in weights}
        metrics = trainer.train_step(batch)
        gate_grad = torch.cat([g.log_alpha.grad for g in student.encoder.gates()])
        steps[scale] = metrics["grad_norm"], [p.grad.clone() for p in weights], gate_grad
    (norm, grads, gate_grad), (big_norm, big_grads, big_gate_grad) = steps[0.0], steps[1e6]
    assert big_norm == pytest.approx(norm) and norm > settings.grad_clip  # weights clipped
    for a, b in zip(grads, big_grads, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(big_gate_grad, gate_grad + 1e6)  # the gates' own: unclipped


# -----------------------------------------------------------------------------
# the teacher entry point


def teacher_job(corpus, tmp_path, ids_file) -> dict:
    """A 4-step teacher job that logs to the MLflow ids file ``ids_file``."""
    return dict(
        **teacher_data(corpus),
        model_config=tiny_model_config(),
        settings={**tiny_settings(max_steps=4, eval_every=2).to_dict()},
        out_model=tmp_path / "models" / "teacher.pt",
        work_dir=tmp_path / "work",
        mlflow_ids=ids_file,
        threads=2,
        progress=False,
    )


def test_train_teacher_writes_the_model_and_logs_to_mlflow(corpus, tmp_path, monkeypatch):
    import mlflow

    from asrprune.tracking import init_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ids = init_tracking(tmp_path / "mlflow.db", "test", "run", tmp_path / "ids.json")
    kwargs = teacher_job(corpus, tmp_path, tmp_path / "ids.json")
    summary = train_teacher(**kwargs)
    saved = load_model(tmp_path / "models" / "teacher.pt")
    extra = saved.extra
    assert saved.model.config.vocab_size == corpus.tokenizer.vocab_size
    assert saved.tokenizer_bytes == corpus.bpe.read_bytes()
    torch.testing.assert_close(saved.cmvn["mean"], corpus.cmvn.mean)
    assert extra["step"] == 4 and extra["dev_wer"] == summary["dev_wer"] is not None

    mlflow.set_tracking_uri(ids["tracking_uri"])
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.tags["stage"] == "teacher"
    assert run.data.tags["mlflow.parentRunId"] == ids["parent_run_id"]
    assert run.data.params["train.max_steps"] == "4" and run.data.params["model.d_model"] == "32"
    client = mlflow.MlflowClient()
    loss = client.get_metric_history(run.info.run_id, "train.rnnt_loss")
    assert sorted(m.step for m in loss) == [2, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev.wer")] == [2, 4]

    # a rerun resumes (nothing left to do) into the same MLflow run
    again = train_teacher(**kwargs)
    assert again["mlflow_run_id"] == summary["mlflow_run_id"]
    runs = mlflow.search_runs([ids["experiment_id"]], filter_string="tags.stage = 'teacher'")
    assert len(runs) == 1

    # a rerun with another setting (Snakemake reruns on changed params) trains afresh
    changed = {**kwargs, "settings": {**kwargs["settings"], "peak_lr": 2e-3}}
    fresh = train_teacher(**changed)
    assert fresh["mlflow_run_id"] != summary["mlflow_run_id"]
    assert load_model(tmp_path / "models" / "teacher.pt").extra["step"] == 4


def test_train_teacher_spools_its_run_when_the_server_is_dead(corpus, tmp_path):
    import mlflow

    from asrprune.tracking import sync_spool

    ids_file = dead_server_ids(tmp_path)
    kwargs = teacher_job(corpus, tmp_path, ids_file)
    summary = train_teacher(**kwargs)
    assert (tmp_path / "models" / "teacher.pt").is_file()
    assert summary["mlflow_run_id"].startswith("spool:")
    # a rerun resumes into the same spooled run
    assert train_teacher(**kwargs)["mlflow_run_id"] == summary["mlflow_run_id"]

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    replayed, skipped = sync_spool(ids_file, store)
    assert len(replayed) == 1 and not skipped
    client = mlflow.MlflowClient(store)
    exp = client.get_experiment_by_name("asrprune-test")
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'teacher'")
    assert run.data.params["train.max_steps"] == "4"
    loss = client.get_metric_history(run.info.run_id, "train.rnnt_loss")
    assert sorted(m.step for m in loss) == [2, 4]


def test_vocab_size_comes_from_the_tokenizer(corpus):
    tok = corpus.tokenizer
    assert resolve_model_config(tiny_model_config(), tok).vocab_size == tok.vocab_size
    config = resolve_model_config({**tiny_model_config(), "vocab_size": None}, tok)
    assert isinstance(config, ModelConfig) and config.vocab_size == tok.vocab_size
    with pytest.raises(AsrpruneError, match="vocab_size is 99 but tokenizer"):
        resolve_model_config({**tiny_model_config(), "vocab_size": 99}, tok)
    with pytest.raises(AsrpruneError, match="unknown key 'width'"):
        resolve_model_config({"width": 3}, tok)


def test_intermediate_ctc_shares_the_ctc_weight():
    settings = tiny_settings(ctc_weight_start=0.8, inter_ctc_block=1, inter_ctc_share=0.25)
    model = tiny_model().eval()
    feats, lens, tokens, token_lens = tiny_batch()
    batch = Batch(["a", "b", "c"], feats, lens, tokens, token_lens)
    loss, metrics = TransducerLoss(settings)(model, batch, step=1)
    out = model(feats, lens, tokens, token_lens, inter_ctc_block=1)
    expected = out.rnnt_loss + 0.8 * (0.75 * out.ctc_loss + 0.25 * out.inter_ctc_loss)
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert metrics["inter_ctc_loss"] == pytest.approx(float(out.inter_ctc_loss.detach()), rel=1e-5)


# -----------------------------------------------------------------------------
# precision


@pytest.mark.skipif(not has_native_bf16(torch.device("cpu")), reason="no native bf16 on this CPU")
def test_bf16_autocast_on_a_cpu_with_native_bf16_keeps_the_loss_and_fp32_weights(
    corpus, data, tmp_path
):
    """bf16 is the default wherever the device has it; the step must compute the same
    loss (within bf16's precision) and keep the optimised weights in fp32."""
    losses = {}
    for bf16 in (False, True):
        settings = tiny_settings(bf16=bf16, specaug_start_step=100)
        trainer = Trainer(new_model(corpus), data[0], None, settings, tmp_path / str(bf16))
        assert trainer.amp is bf16
        batch = next(trainer._batches())
        losses[bf16] = trainer.train_step(batch)["loss"]
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert losses[True] == pytest.approx(losses[False], rel=0.02)
    assert losses[True] != losses[False]  # bf16 really ran
