"""Replicates of pruning jobs (config prune.seeds): names, settings, tables, significance."""

from __future__ import annotations

import csv
import json

import pytest

from asrprune.errors import AsrpruneError
from asrprune.pruning.settings import method_settings, replicate_settings
from asrprune.results.layout import (
    Replicates,
    full_decoding,
    model_name,
    parse_model_name,
    pruned_models,
)
from asrprune.results.significance import paired_bootstrap, pooled_bootstrap
from asrprune.results.tables import build_table, to_markdown, write_tables
from tests.results.runs import REF, WRONG, hyps_rows, write_hyps, write_run


def test_names_round_trip_and_seed_zero_keeps_the_plain_name():
    assert model_name("omp", 0.5) == model_name("omp", 0.5, 0) == "omp-s0.5"
    assert model_name("l0-params", 0.3, 2) == "l0-params-s0.3-seed2"
    for name in ("omp-s0.5", "l0-params-s0.3-seed2", "l0-nokd-s0.25-seed11"):
        assert model_name(*parse_model_name(name)) == name
    for bad in ("teacher", "omp", "omp-s0.5-seed0", "omp-s0.5-seedx"):
        with pytest.raises(AsrpruneError, match="neither"):
            parse_model_name(bad)
    assert full_decoding("omp-s0.5-seed1", [0.5]) and not full_decoding("omp-s0.3-seed1", [0.5])


def test_replicates_run_where_asked_and_once_elsewhere():
    three_at_half = Replicates(3, (0.5,))
    assert pruned_models(["omp", "svd"], [0.3, 0.5], three_at_half) == [
        "omp-s0.3",
        "omp-s0.5",
        "omp-s0.5-seed1",
        "omp-s0.5-seed2",
        "svd-s0.3",
        "svd-s0.5",
        "svd-s0.5-seed1",
        "svd-s0.5-seed2",
    ]
    assert pruned_models(["omp"], [0.3, 0.5]) == ["omp-s0.3", "omp-s0.5"]
    assert Replicates(2).names("omp", 0.3) == ["omp-s0.3", "omp-s0.3-seed1"]
    with pytest.raises(AsrpruneError, match="seed_sparsities: 0.4 is not among"):
        pruned_models(["omp"], [0.3, 0.5], Replicates(2, (0.4,)))
    with pytest.raises(AsrpruneError, match="prune.seeds"):
        Replicates(0)


def test_seed_methods_replicate_only_the_methods_named():
    ours_only = Replicates(2, (0.5,), ("omp",))
    assert pruned_models(["omp", "l0-nokd"], [0.3, 0.5], ours_only) == [
        "omp-s0.3",
        "omp-s0.5",
        "omp-s0.5-seed1",
        "l0-nokd-s0.3",
        "l0-nokd-s0.5",
    ]
    with pytest.raises(AsrpruneError, match="prune.seed_methods: unknown 'l0-typo'"):
        pruned_models(["omp"], [0.5], Replicates(2, None, ("l0-typo",)))


def test_a_replicate_moves_every_seed_its_method_reads():
    prune = {
        "l0": {"reference_seconds": 10.0, "gate_lr": 0.1},
        "train": {"max_steps": 4, "seed": 1234},
        "finetune": {"max_steps": 2, "seed": 99},
        "omp": {"ranking": "per_kind"},
        "parp": {"reprune_every": 4},
    }
    l0 = method_settings("l0-params", prune)
    assert replicate_settings(l0, 0) == l0
    moved = replicate_settings(l0, 2)
    assert (moved["train"]["seed"], moved["finetune"]["seed"]) == (1236, 101)
    assert l0["train"]["seed"] == 1234  # the input is left alone
    omp = replicate_settings(method_settings("omp", prune), 1)
    assert omp["train"] == {"max_steps": 4} and omp["finetune"]["seed"] == 100


def _add_replicate(run, method, sparsity, seed, wer_shift, n_wrong, rtf):
    """The result files of replicate ``seed`` of a job that write_run made (seed 0)."""
    base, name = model_name(method, sparsity), model_name(method, sparsity, seed)
    metrics = json.loads((run / f"metrics/{base}.json").read_text())
    metrics["wer"] = {k: v + wer_shift for k, v in metrics["wer"].items()}
    (run / f"metrics/{name}.json").write_text(json.dumps(metrics))
    for split in ("test-clean", "test-other"):
        write_hyps(run / "metrics", name, split, hyps_rows(n_wrong))
    with open(run / "speed.csv", "a", newline="") as f:
        csv.writer(f).writerow([name, rtf, 0.0])


def test_tables_give_the_mean_and_spread_of_replicates(tmp_path):
    run = write_run(tmp_path, ["l0-params", "omp"], [0.5])
    # seed 0: l0-params WER 11 / 21, 1 wrong of 40; omp 12 / 22, 2 wrong (write_run)
    _add_replicate(run, "l0-params", 0.5, 1, 2.0, 3, 0.5)
    _add_replicate(run, "omp", 0.5, 1, 0.0, 2, 0.5)
    table = build_table(
        run / "metrics", run / "speed.csv", ["l0-params", "omp"], [0.5], Replicates(2)
    )
    ours = table.set_index("method").loc["l0-params"]
    assert ours["wer_test_clean"] == pytest.approx(12.0)  # mean of 11 and 13
    assert ours["wer_test_clean_sd"] == pytest.approx(2**0.5)  # sample sd of 11 and 13
    assert ours["seeds"] == 2 and ours["model"] == "l0-params-s0.5"
    assert ours["rtf"] == pytest.approx((0.9 * 0.97 + 0.5) / 2)
    teacher = table.set_index("method").loc["teacher"]
    assert teacher["seeds"] == 1 and teacher["wer_test_clean_sd"] != teacher["wer_test_clean_sd"]
    assert "| 50% | l0-params | 12.00 ± 1.41 | 22.00 ± 1.41 |" in to_markdown(table)
    # significance pools the replicates: ours 1 and 3 wrong, omp 2 and 2: no difference
    written = write_tables(
        run / "metrics",
        run / "speed.csv",
        ["l0-params", "omp"],
        [0.5],
        tmp_path / "tables",
        Replicates(2),
    )
    tested = next(p for p in written if p.name == "table1_significance.md").read_text()
    assert "+0.00" in tested and "mean over its 2 replicates" in tested
    # omp run once (prune.seed_methods): ours pools its 2 (1 and 3 wrong), omp's 2 wrong
    written = write_tables(
        run / "metrics",
        run / "speed.csv",
        ["l0-params", "omp"],
        [0.5],
        tmp_path / "one-omp",
        Replicates(2, None, ("l0-params",)),
    )
    tested = next(p for p in written if p.name == "table1_significance.md").read_text()
    assert "+0.00" in tested
    assert "ours the mean over its 2 replicates, the other over its 1" in tested


def test_pooled_bootstrap_averages_replicates_and_one_each_is_the_paired_one():
    a1, a2, b = hyps_rows(1), hyps_rows(5), hyps_rows(3)
    one = paired_bootstrap(a1, b, resamples=500)
    assert pooled_bootstrap([a1], [b], resamples=500) == one
    pooled = pooled_bootstrap([a1, a2], [b, b], resamples=500)
    assert pooled.wer_a == pytest.approx(100 * 3 / (40 * 9))  # 1 and 5 wrong words: 3
    assert pooled.delta == pytest.approx(0.0) and pooled.seeds == 2
    other = [dict(r, ref=WRONG if r["id"] == "u000" else REF) for r in a2]
    with pytest.raises(AsrpruneError, match="replicates of a differ"):
        pooled_bootstrap([a1, other], [b, b])
