"""The latency table's check: modelled against measured encoder time, per model of a run.

For every model of the run (the teacher first), ``latency.csv`` gives the fraction of the
teacher's encoder time it keeps three ways:

- ``target_kept``: what an ``l0-latency`` job was asked for, 1 - its target sparsity
  (empty for the other methods);
- ``modelled_kept``: the latency model's prediction for the model's structure over the
  teacher's (asrprune.model.latency; the table the run's l0-latency jobs pruned to);
- ``measured_kept``: the encoder's RTF over the teacher's (their fastest rounds), timed
  side by side on the table's profile: ``speed.csv``'s ``rtf_ratio`` for the cpu, torch,
  1-thread profile
  (rule speed, the paper's protocol), else ``speed_deploy.csv``'s ``encoder_ratio`` at the
  profile's backend (fp32) and threads (rule speed_deploy: the deployed models only);

then ``model_error_pct`` = 100 (modelled / measured - 1), the latency model's error, and
``target_error_pct`` = 100 (measured / target - 1), how far a job's measured time landed
from its target. The SVD baseline's factored layers are modelled from the table's low-rank
timings (``lowrank``) and the metrics file's ``low_rank`` list.

``latency_matched.csv`` asks what a time budget buys over a proxy: each ``l0-flops`` job
against the latency-target job nearest to it in measured time, greedy WER on the test
sets, paired bootstrap pooling the replicates both jobs have.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open, json_field, read_json
from asrprune.model import ConformerEncoder, EncoderStructure, LatencyModel
from asrprune.pruning.settings import LATENCY_METHODS, SPEED_RULE_PROFILE
from asrprune.results.layout import TEACHER, parse_model_name
from asrprune.results.markdown import markdown_table
from asrprune.results.significance import TEST_SPLITS, compare_jobs, interval_cell
from asrprune.results.tables import read_speed, write_table

COLUMNS = (
    "model",
    "target_kept",
    "modelled_kept",
    "measured_kept",
    "model_error_pct",
    "target_error_pct",
)


def _modelled(metrics_dir: Path, model: str, latency: LatencyModel) -> float:
    """The latency model's seconds for ``model``'s structure and factored layers, read
    from its metrics file (files from before ``low_rank`` was recorded count as none)."""
    path = metrics_dir / f"{model}.json"
    if not path.is_file():
        raise AsrpruneError(f"metrics file not found: {path}")
    metrics = read_json(path)
    where = f"{path} (structure)"
    structure = EncoderStructure.from_dict(json_field(metrics, path, "structure"), where)
    return ConformerEncoder.count_latency(structure, latency, metrics.get("low_rank", ()))


def measured_kept(profile: dict, speed_path: str | os.PathLike) -> dict[str, float]:
    """Model -> measured encoder time over the teacher's on ``profile``, from the speed
    file that timed it: ``speed.csv`` for the speed rule's profile, else
    ``speed_deploy.csv``."""
    if profile == SPEED_RULE_PROFILE:
        speed = read_speed(speed_path)
        if "rtf_ratio" not in speed.columns:
            raise AsrpruneError(f"{speed_path}: column 'rtf_ratio' is missing")
        return {str(m): float(v) for m, v in speed["rtf_ratio"].items()}
    if profile["device"] != "cpu":
        raise AsrpruneError(f"no speed rule times the {profile['device']} device: no check")
    from asrprune.results.deploy import read_deploy_speed

    speed = read_deploy_speed(speed_path)
    rows = speed[
        (speed["backend"] == profile["backend"])
        & (speed["precision"] == "fp32")
        & (speed["threads"] == profile["threads"])
    ]
    if rows.empty:
        raise AsrpruneError(
            f"{speed_path}: no {profile['backend']} fp32 rows at {profile['threads']} "
            "thread(s), the latency profile (config deploy.threads)"
        )
    return {str(r.model): float(r.encoder_ratio) for r in rows.itertuples(index=False)}


def build_latency_table(
    table_path: str | os.PathLike,
    speed_path: str | os.PathLike,
    metrics_dir: str | os.PathLike,
    models: Sequence[str],
) -> pd.DataFrame:
    """One row per model the speed file timed (``models``: the pruned ones; the teacher
    comes first). ``speed_path``: the file that timed the table's profile
    (:func:`measured_kept`)."""
    latency = LatencyModel.load(table_path)
    measured_by_model = measured_kept(latency.profile, speed_path)
    if TEACHER not in measured_by_model:
        raise AsrpruneError(f"{speed_path}: no row for the teacher")
    if latency.profile == SPEED_RULE_PROFILE:
        missing = [m for m in models if m not in measured_by_model]
        if missing:
            raise AsrpruneError(f"{speed_path}: no rtf_ratio for model {missing[0]!r}")
    metrics_dir = Path(metrics_dir)
    teacher = _modelled(metrics_dir, TEACHER, latency)
    rows = []
    for model in [TEACHER, *models]:
        if model not in measured_by_model:  # not deployed: the deploy speed rule skips it
            continue
        measured = measured_by_model[model]
        modelled = _modelled(metrics_dir, model, latency) / teacher
        target = float("nan")
        if model != TEACHER:
            method, sparsity, _ = parse_model_name(model)
            if method in LATENCY_METHODS:
                target = 1.0 - sparsity
        rows.append(
            {
                "model": model,
                "target_kept": target,
                "modelled_kept": modelled,
                "measured_kept": measured,
                "model_error_pct": 100.0 * (modelled / measured - 1.0),
                "target_error_pct": 100.0 * (measured / target - 1.0),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


MATCHED_COLUMNS = (
    "rival",
    "rival_kept",
    "model",
    "model_kept",
    "split",
    "wer_model",
    "wer_rival",
    "delta",
    "ci_low",
    "ci_high",
    "seeds",
)

# the proxy-budget method a latency-target job is compared with at matched measured time
MATCHED_RIVAL = "l0-flops"


def _jobs(models: Sequence[str]) -> dict[tuple[str, float], list[str]]:
    """(method, sparsity) -> its replicates' model names, seed 0 first."""
    jobs: dict[tuple[str, float], list[tuple[int, str]]] = {}
    for model in models:
        method, sparsity, seed = parse_model_name(model)
        jobs.setdefault((method, sparsity), []).append((seed, model))
    return {job: [m for _, m in sorted(names)] for job, names in jobs.items()}


def matched_time_comparisons(
    table: pd.DataFrame, metrics_dir: str | os.PathLike, models: Sequence[str], **options
) -> pd.DataFrame:
    """Each ``l0-flops`` job of ``models`` against the latency-target job nearest to it in
    measured time (``table``'s ``measured_kept``, each job's mean over its replicates), on
    each test split: ``a`` is the latency-target job. Both sides pool the first k
    replicates, k the fewer of the two jobs'. Empty without both kinds of job."""
    measured = dict(zip(table["model"], table["measured_kept"], strict=True))

    def job_time(names: list[str]) -> float:
        times = [measured[n] for n in names if n in measured]
        return sum(times) / len(times) if times else float("nan")

    jobs = _jobs(models)
    timed = {job: job_time(names) for job, names in jobs.items()}
    targets = [j for j in jobs if j[0] in LATENCY_METHODS and not pd.isna(timed[j])]
    rivals = [j for j in jobs if j[0] == MATCHED_RIVAL and not pd.isna(timed[j])]
    rows = []
    for job in sorted(rivals) if targets else []:
        near = min(targets, key=lambda j: (abs(timed[j] - timed[job]), j[1]))
        k = min(len(jobs[job]), len(jobs[near]))
        for c in compare_jobs(metrics_dir, jobs[near][:k], jobs[job][:k], TEST_SPLITS, **options):
            rows.append(
                {
                    "rival": c.b,
                    "rival_kept": timed[job],
                    "model": c.a,
                    "model_kept": timed[near],
                    "split": c.split,
                    "wer_model": c.wer_a,
                    "wer_rival": c.wer_b,
                    "delta": c.delta,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "seeds": c.seeds,
                }
            )
    return pd.DataFrame(rows, columns=list(MATCHED_COLUMNS))


def matched_markdown(matched: pd.DataFrame) -> str:
    """One row per rival job: both jobs' measured time kept and the WER difference per
    split, as the significance tables write it."""
    if matched.empty:
        return ""
    header = ("Proxy job (time kept)", "Latency-target job (time kept)", "WER difference")
    body = []
    for (rival, model), group in matched.groupby(["rival", "model"], sort=False):
        first = group.iloc[0]
        cells = [interval_cell(r) for r in group.itertuples(index=False)]
        body.append(
            (
                f"{rival} ({first.rival_kept:.3f})",
                f"{model} ({first.model_kept:.3f})",
                " / ".join(cells),
            )
        )
    splits = " / ".join(dict.fromkeys(matched["split"]))
    seeds = int(matched["seeds"].max())
    pooled = f", pooling up to {seeds} replicates a side" if seeds > 1 else ""
    return (
        "\n### At matched time\n\n"
        + markdown_table(header, body, align=("---",) * 3)
        + f"\nGreedy WER difference in points (latency-target job minus the proxy job; "
        f"{splits}) and its 95% paired-bootstrap interval{pooled}. Bold: the time "
        "budget better, the interval excludes 0; italic: worse, likewise.\n"
    )


def latency_markdown(table: pd.DataFrame) -> str:
    header = (
        "Model",
        "Time kept: target",
        "modelled",
        "measured",
        "Model error %",
        "Measured vs target %",
    )
    rows = []

    def cell(value: float, fmt: str) -> str:
        return "" if pd.isna(value) else format(value, fmt)

    for r in table.itertuples(index=False):
        cells = (
            r.model,
            cell(r.target_kept, ".3f"),
            cell(r.modelled_kept, ".3f"),
            cell(r.measured_kept, ".3f"),
            cell(r.model_error_pct, "+.1f"),
            cell(r.target_error_pct, "+.1f"),
        )
        rows.append(cells)
    errors = table["model_error_pct"].abs()
    within = table["target_error_pct"].dropna().abs()
    summary = (
        f"\nLatency model error over {len(table)} models: median {errors.median():.1f}%, "
        f"largest {errors.max():.1f}% ({table.loc[errors.idxmax(), 'model']})."
    )
    if len(within):
        summary += (
            f" Latency-target jobs within 5% of their target: {(within <= 5).sum()} of "
            f"{len(within)}."
        )
    return markdown_table(header, rows) + summary + "\n"


def write_latency_table(
    table_path: str | os.PathLike,
    speed_path: str | os.PathLike,
    metrics_dir: str | os.PathLike,
    models: Sequence[str],
    out_dir: str | os.PathLike,
) -> list[Path]:
    """``latency.csv``, ``latency.md`` (with the matched-time comparisons, if any) and
    ``latency_matched.csv`` under ``out_dir``."""
    table = build_latency_table(table_path, speed_path, metrics_dir, models)
    matched = matched_time_comparisons(table, metrics_dir, models)
    text = latency_markdown(table) + matched_markdown(matched)
    paths = write_table(table, out_dir, "latency", text)
    matched_csv = Path(out_dir) / "latency_matched.csv"
    with atomic_open(matched_csv) as f:
        matched.to_csv(f, index=False)
    return [*paths, matched_csv]
