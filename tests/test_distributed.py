"""Data parallelism on the CPU: two gloo processes against one process on the same batches.

The two ranks run in processes started by ``torch.multiprocessing`` with torchrun's
environment variables, so the trainer takes the same path as under ``torchrun``. One start
runs every scenario (each start costs seconds of imports); the ranks save what they saw and
the test compares it with a single process here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from asrprune import distributed
from asrprune.data.batching import Batch, collate
from asrprune.distill import LayerwiseDistill
from asrprune.errors import AsrpruneError
from asrprune.pruning.l0 import (
    GateKinds,
    L0Loss,
    L0Settings,
    Lagrangian,
    gated_student,
    param_groups,
)
from asrprune.train import Trainer, TrainSettings
from tests.builders_model import Killed, dying_at
from tests.model.tiny import VOCAB, tiny_model

WORLD = 2
# Three utterances of unequal length and transcript: shares of 2 and 1, so a plain mean of
# the ranks' mean losses would differ from the batch's mean (the trainer must weight them).
LENGTHS, TOKENS = (100, 83, 41), (7, 5, 3)
# Equal lengths for the L0 step: its distillation loss is a mean over frames, which the
# utterance weighting reproduces exactly only when every utterance has as many frames.
L0_LENGTHS = (80, 80, 80)
SHARES = ([0, 2], [1])  # rank 0's and rank 1's utterances of the global batch


class MemoryData:
    """Utterances held in memory, with the attributes the trainer reads from a dataset."""

    def __init__(self, lengths, tokens, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.lengths = list(lengths)
        self.utts = [type("Utt", (), {"id": f"u{i}"})() for i in range(len(lengths))]
        self.items = [
            (f"u{i}", torch.randn(n, 80, generator=g), torch.randint(1, VOCAB, (u,), generator=g))
            for i, (n, u) in enumerate(zip(lengths, tokens, strict=True))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def settings(**overrides) -> TrainSettings:
    values = dict(
        max_steps=4,
        max_frames=400,
        peak_lr=3e-3,
        warmup_steps=2,
        grad_clip=0.0,  # compare raw gradients
        ctc_weight_switch_step=1,
        specaug_start_step=100,
        sorted_first_epoch=False,
        checkpoint_every=2,
        log_every=1,
        eval_every=0,
        seed=3,
        bf16=False,
    )
    return TrainSettings(**{**values, **overrides})


def teacher_trainer(out_dir, data, s=None, loss_fn=None, dropout=0.0):
    s = s or settings()
    return Trainer(tiny_model(seed=1, dropout=dropout), data, None, s, out_dir, loss_fn=loss_fn)


def l0_trainer(out_dir, data):
    s = settings()
    l0 = L0Settings(target_warmup_steps=2, gate_lr=0.1, lambda_ascent="sgd", lambda_lr=2.0)
    teacher = tiny_model(seed=1).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(5)
    student = gated_student(teacher, GateKinds())
    distill = LayerwiseDistill(len(teacher.encoder.blocks), teacher.config.d_model)
    lagrangian = Lagrangian("sgd", l0.lambda_lr, 0.5)
    return Trainer(
        student,
        data,
        None,
        s,
        out_dir,
        loss_fn=L0Loss(teacher, distill, lagrangian, s, l0, "params", 0.5, student=student),
        extra_modules={"distill": distill, "lagrangian": lagrangian},
        param_groups=param_groups(student, lagrangian, l0),
    )


def batch_of(data: MemoryData, idx) -> Batch:
    return collate([data[i] for i in idx])


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every parameter, gradient and buffer of the model and the extra modules."""
    out = {}
    for prefix, module in trainer._modules().items():
        for name, p in module.named_parameters():
            out[f"{prefix}.{name}"] = p.detach().clone()
            if p.grad is not None:
                out[f"grad.{prefix}.{name}"] = p.grad.detach().clone()
        for name, b in module.named_buffers():
            out[f"buffer.{prefix}.{name}"] = b.detach().clone()
    return out


def loop_data() -> MemoryData:
    # lengths such that every batch of the 400-frame budget holds 2+ utterances on one
    # process too: the global batches are then the same for 1 and 2 processes
    lengths = [40 + 7 * (i % 9) for i in range(18)]
    return MemoryData(lengths, [2 + i % 4 for i in range(18)], seed=2)


# -----------------------------------------------------------------------------
# what each scenario records, on one process or per rank


def run_scenarios(work: Path, rank: int) -> dict:
    """Every scenario on this process; ``rank`` None: one process on the whole batches."""
    share = (lambda idx: [idx[i] for i in SHARES[rank]]) if rank is not None else (lambda x: x)
    tag = "single" if rank is None else "ddp"  # the ranks of a job share its folders
    out: dict = {}

    # one teacher step on an explicit global batch: loss, metrics, gradients
    data = MemoryData(LENGTHS, TOKENS)
    trainer = teacher_trainer(work / f"step-{tag}", data)
    out["step_metrics"] = trainer.train_step(batch_of(data, share([0, 1, 2])))
    out["step"] = snapshot(trainer)

    # two L0 steps (gates, distillation maps, SGD multipliers as buffers)
    data = MemoryData(L0_LENGTHS, TOKENS, seed=1)
    trainer = l0_trainer(work / f"l0-{tag}", data)
    out["l0_metrics"] = [trainer.train_step(batch_of(data, share([0, 1, 2]))) for _ in range(2)]
    out["l0"] = snapshot(trainer)

    # the loop through sampler and loader: four steps
    trainer = teacher_trainer(work / f"loop-{tag}", loop_data())
    trainer.run(progress=False)
    out["loop"] = snapshot(trainer)
    out["loop_history"] = trainer.history

    if rank is not None:  # killed after the checkpoint at step 2, resumed, with dropout
        whole = teacher_trainer(work / "whole", loop_data(), dropout=0.2)
        whole.run(progress=False)
        out["whole"] = snapshot(whole)
        s = settings()
        with pytest.raises(Killed):
            teacher_trainer(work / "killed", loop_data(), s, dying_at(3, s), dropout=0.2).run(
                progress=False
            )
        resumed = teacher_trainer(work / "killed", loop_data(), dropout=0.2)
        result = resumed.run(progress=False)
        out["resumed"] = snapshot(resumed)
        out["resumed_from"] = result.resumed_from
    return out


def _worker(rank: int, port: int, work: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    with distributed.session() as world:
        assert world.distributed and world.rank == rank
        out = run_scenarios(Path(work), rank)
    torch.save(out, Path(work) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        assert name not in os.environ, f"{name} is set: the reference must be one process"
    torch.set_num_threads(1)
    single = run_scenarios(work, None)
    mp.spawn(_worker, args=(_free_port(), str(work)), nprocs=WORLD, join=True)
    ranks = [torch.load(work / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return single, ranks, work


def assert_same(a: dict, b: dict, rel: float, keys=None):
    """Tensors alike up to ``rel`` of each tensor's largest magnitude, or of 1 if that is
    smaller (sums over other batch shapes round differently); ``rel`` 0: bitwise."""
    keys = keys if keys is not None else sorted(a)
    assert set(keys) <= set(b), sorted(set(keys) - set(b))
    for k in keys:
        scale = max(float(a[k].abs().max()), 1.0) if a[k].numel() else 0.0
        diff = float((b[k] - a[k]).abs().max()) if a[k].numel() else 0.0
        assert diff <= rel * scale, f"{k}: differs by {diff:.3g} at scale {scale:.3g}"


# The key bias, and the position projection's columns for slow sinusoids, shift all of a
# query's scores alike: softmax gives them no gradient but rounding noise, which Adam (eps
# 1e-9) scales to full steps, so after a step they differ by rounding alone.
NOISE = ("mhsa.k.bias", "mhsa.linear_pos.weight")


def stable_params(snap: dict) -> list[str]:
    return [k for k in snap if not k.startswith("grad.") and not k.endswith(NOISE)]


def grads(snap: dict) -> list[str]:
    return [k for k in snap if k.startswith("grad.")]


# -----------------------------------------------------------------------------
# tests


def test_a_step_on_two_ranks_equals_one_process_on_the_global_batch(runs):
    single, ranks, _ = runs
    assert grads(single["step"])  # every trainable parameter got one
    for r in ranks:
        m = r["step_metrics"]
        for key in ("loss", "rnnt_loss", "ctc_loss", "grad_norm"):
            assert m[key] == pytest.approx(single["step_metrics"][key], rel=1e-5), key
        assert_same(single["step"], r["step"], rel=1e-5, keys=grads(single["step"]))
        assert_same(single["step"], r["step"], rel=1e-5, keys=stable_params(single["step"]))
    assert_same(ranks[0]["step"], ranks[1]["step"], rel=0)  # bitwise alike ranks


def test_l0_steps_keep_gates_maps_and_multipliers_in_sync(runs):
    single, ranks, _ = runs
    keys = sorted(single["l0"])
    assert any("log_alpha" in k for k in keys) and any("lambda1" in k for k in keys)
    assert any(k.startswith("grad.extra.distill") for k in keys)
    for r in ranks:
        for mine, ref in zip(r["l0_metrics"], single["l0_metrics"], strict=True):
            for key in ("loss", "distill_loss", "expected_kept", "lambda1", "lambda2"):
                assert mine[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), key
        assert_same(single["l0"], r["l0"], rel=1e-5, keys=grads(single["l0"]))
        assert_same(single["l0"], r["l0"], rel=1e-5, keys=stable_params(single["l0"]))
    assert_same(ranks[0]["l0"], ranks[1]["l0"], rel=0)


def test_the_training_loop_on_two_ranks_follows_one_process(runs):
    single, ranks, work = runs
    for r in ranks:
        assert_same(single["loop"], r["loop"], rel=1e-5, keys=stable_params(single["loop"]))
        losses = [row["loss"] for row in r["loop_history"]["train"]]
        expected = [row["loss"] for row in single["loop_history"]["train"]]
        assert losses == pytest.approx(expected, rel=1e-5)
    state = torch.load(work / "loop-ddp" / "checkpoint.pt", weights_only=True)
    assert len(state["rng_ranks"]) == WORLD and state["data"]["world_size"] == WORLD


def test_a_killed_two_rank_job_resumes_to_the_same_weights(runs):
    _, ranks, _ = runs
    for r in ranks:
        assert r["resumed_from"] == 2
        assert_same(r["whole"], r["resumed"], rel=1e-6)
    assert_same(ranks[0]["resumed"], ranks[1]["resumed"], rel=0)


def test_only_rank_0_writes_files(tmp_path, monkeypatch):
    from asrprune.io import write_json

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    write_json(tmp_path / "a.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind
    monkeypatch.setenv("RANK", "0")
    write_json(tmp_path / "a.json", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(AsrpruneError, match="expected 0 <= RANK < WORLD_SIZE"):
        distributed.env_world()
