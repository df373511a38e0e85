"""RESULTS.md: one run's results as a document, written from the run's own files.

Sections, each from one kind of file: the data report (``data/report.json``), the
teacher's WER per split and decoding (``metrics/teacher.json``: ``wer``, the tables'
decoding, and ``full`` when the run decoded the teacher a second way too), the tables
and their significance tables as rule tables wrote them (``tables/*.md``, copied), the
speed table (``speed.csv``), links to the figures, the time per stage and the run's
wall-clock span (the benchmark files; see ``stage_times``), and the code version.

Every number printed is a number of those files, rounded, except the stage times'
sums, counts and span, which are computed from the benchmark files as stated beside
them. The output depends on the files alone, except the code version line.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open, json_field, json_number, read_json
from asrprune.results.layout import DOMAIN_SHIFT
from asrprune.results.markdown import markdown_table
from asrprune.results.stage_times import read_jobs, stages_markdown, wall_span
from asrprune.results.tables import read_speed

NONE = "-"  # a cell with nothing to show


# -----------------------------------------------------------------------------
# reading


def _read_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"{what} not found: {path}")
    data = read_json(path)
    if not isinstance(data, dict):
        raise AsrpruneError(f"{path}: expected a JSON object at the top level")
    return data


def code_version(repo: str | os.PathLike) -> str:
    """The commit checked out in ``repo`` and whether its tree differs from it (tracked
    changes or untracked files); "unknown" when ``repo`` is not a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True
        )
    except OSError:  # no git program
        return "unknown (git is not installed)"
    if head.returncode != 0 or status.returncode != 0:
        return "unknown (the workflow is not in a git checkout)"
    state = "with uncommitted changes" if status.stdout.strip() else "clean"
    return f"commit `{head.stdout.strip()}`, working tree {state}"


# -----------------------------------------------------------------------------
# sections


def _counts(counts: dict) -> str:
    """``{"scripture": 30, "jargon": 10}`` as "scripture 30, jargon 10"."""
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or NONE


def data_section(path: str | os.PathLike) -> str:
    report = _read_json(path, "data report")
    splits = json_field(report, path, "splits")
    # the embedded corpus's text domains and engines per split, where the report has them
    composed = any("domains" in s for s in splits.values())
    rows = []
    for split, s in splits.items():
        reasons = s.get("excluded_by_reason", {})
        fields = ("utterances", "hours", "speakers", "excluded")
        n, hours, speakers, excluded = (
            json_number(report, path, "splits", split, f) for f in fields
        )
        row = (
            split,
            str(n),
            f"{hours:.3f}",
            str(speakers),
            str(excluded),
            ", ".join(f"{k} {v}" for k, v in reasons.items()) or NONE,
        )
        if composed:
            row += (_counts(s.get("domains", {})), _counts(s.get("engines", {})))
        rows.append(row)
    total = (
        "total",
        str(json_number(report, path, "total", "utterances")),
        f"{json_number(report, path, 'total', 'hours'):.3f}",
        NONE,
        str(json_number(report, path, "total", "excluded")),
        NONE,
    )
    rows.append(total + ((NONE, NONE) if composed else ()))
    header = ("split", "utterances", "hours", "speakers", "excluded", "exclusions by reason")
    align = ("---", "---:", "---:", "---:", "---:", "---")
    if composed:
        header += ("text domains (synthesised)", "TTS engines (synthesised)")
        align += ("---", "---")
    source = json_field(report, path, "source")
    return (
        f"Source: {source}. Utterances kept per split, their hours and speakers, and the "
        "utterances excluded by the data checks (`data/report.json`).\n\n"
        + markdown_table(header, rows, align=align)
    )


def describe_decoding(decoding: dict) -> str:
    """A decoding dict of the metrics (``method``, ``beam``, ``lm``) in words, e.g.
    "beam search of width 8 with a 6-gram token LM at weight 0.3"."""
    if decoding.get("method") == "greedy":
        text = "greedy search"
    else:
        text = f"{decoding.get('method', '?')} search of width {decoding.get('beam', '?')}"
    lm = decoding.get("lm")
    if lm:
        text += f" with a {lm.get('order', '?')}-gram token LM at weight {lm.get('weight', '?')}"
    elif decoding.get("method") != "greedy":
        text += " without an LM"
    return text


def teacher_section(path: str | os.PathLike) -> str:
    metrics = _read_json(path, "teacher metrics")
    decodings = {"wer": metrics}
    if "full" in metrics:
        decodings["full"] = json_field(metrics, path, "full")
    described = {
        key: describe_decoding(json_field(d, path, "decoding")) for key, d in decodings.items()
    }
    header = ["split", "reference words"]
    header += [f"WER % (`{key}`)" for key in decodings]
    rows = []
    for split in json_field(metrics, path, "wer"):
        words = metrics.get("errors", {}).get(split, {}).get("ref_words")
        cells = [split, NONE if words is None else str(words)]
        for key, d in decodings.items():
            at = ("wer", split) if key == "wer" else ("full", "wer", split)
            has = split in d.get("wer", {})
            cells.append(f"{json_number(metrics, path, *at):.2f}" if has else NONE)
        rows.append(cells)
    lines = [f"- `wer`: {described['wer']}, the decoding of every model in the tables."]
    if "full" in decodings:
        lines.append(f"- `full`: {described['full']}.")
    return (
        "Word error rate per split (`metrics/teacher.json`), decoded as follows:\n\n"
        + "\n".join(lines)
        + "\n\n"
        + markdown_table(header, rows)
    )


def table_title(stem: str) -> str:
    """``table1`` -> "Table 1", ``table2_significance`` -> "Table 2: significance"."""
    if stem == DOMAIN_SHIFT:
        return "Pruning in and out of domain"
    m = re.fullmatch(r"table(\d+)(_significance)?", stem)
    if not m:
        return stem
    return f"Table {m[1]}" + (": significance" if m[2] else "")


def tables_section(tables: Sequence[str | os.PathLike]) -> str:
    parts = []
    for path in map(Path, tables):
        if not path.is_file():
            raise AsrpruneError(f"table not found: {path}")
        parts.append(
            f"### {table_title(path.stem)}\n\n`tables/{path.name}`:\n\n"
            + path.read_text(encoding="utf-8").rstrip("\n")
            + "\n"
        )
    return "\n".join(parts)


def speed_section(path: str | os.PathLike) -> str:
    speed = read_speed(path)
    if "rtf_ratio" not in speed.columns:
        raise AsrpruneError(f"{path}: column 'rtf_ratio' is missing")
    rows = [
        (model, f"{row.rtf_median:.4g}", f"{row.rtf_ratio:.2f}") for model, row in speed.iterrows()
    ]
    return (
        "The encoder's real-time factor on one thread, the median over timed rounds, and its "
        "ratio to the teacher's (`speed.csv`; asrprune.speed defines both).\n\n"
        + markdown_table(("model", "RTF", "RTF / teacher's"), rows)
    )


def deploy_section(tables: Sequence[str | os.PathLike]) -> str:
    """The deployment tables (asrprune.results.deploy), each under its file name."""
    return (
        "Each exported model against its PyTorch self (greedy decoding), then encoder and "
        "full-decode RTF per backend and thread count (asrprune.deploy.speed defines them)."
        "\n\n" + "\n".join(f"`tables/{Path(p).name}`:\n\n{_read_text(p)}" for p in tables)
    )


def latency_section(table: str | os.PathLike) -> str:
    """The latency model's check (asrprune.results.latency)."""
    return (
        "The fraction of the teacher's encoder time each model keeps: the l0-latency "
        "target, the latency model's prediction and the speed rule's measurement "
        "(asrprune.results.latency defines them).\n\n"
        f"`tables/{Path(table).name}`:\n\n{_read_text(table)}"
    )


def _read_text(path: str | os.PathLike) -> str:
    if not Path(path).is_file():
        raise AsrpruneError(f"table not found: {path}")
    return Path(path).read_text(encoding="utf-8").rstrip("\n") + "\n"


def figures_section(figures: Sequence[str | os.PathLike], base: Path) -> str:
    links = [f"- [{Path(f).stem}]({Path(os.path.relpath(f, base)).as_posix()})" for f in figures]
    return "\n".join(links) + "\n"


def stages_section(benchmarks: str | os.PathLike, exclude: Sequence[str | os.PathLike]) -> str:
    jobs = read_jobs(benchmarks, exclude)
    span = wall_span(jobs)
    return (
        "Per stage (`benchmarks/<stage>/<job>.tsv`): its jobs, their wall minutes summed "
        "(job time: jobs of a stage may have run side by side) and its longest job.\n\n"
        + stages_markdown(jobs)
        + f"\nWall-clock span of the run: {span / 60:.1f} min. This is not a measured "
        "duration: it is computed from the benchmark files as the latest file's "
        "modification time minus the earliest job start (a file's modification time "
        "less its job's seconds), so a run resumed after a pause spans the pause, and a "
        "job run again moves it. This document's own job is not counted.\n"
    )


# -----------------------------------------------------------------------------
# the document


def build_document(
    *,
    run: str,
    data_report: str | os.PathLike,
    teacher: str | os.PathLike,
    tables: Sequence[str | os.PathLike],
    speed: str | os.PathLike,
    figures: Sequence[str | os.PathLike],
    benchmarks: str | os.PathLike,
    out: str | os.PathLike,
    exclude_benchmarks: Sequence[str | os.PathLike] = (),
    repo: str | os.PathLike | None = None,
    deploy_tables: Sequence[str | os.PathLike] = (),
    latency_table: str | os.PathLike | None = None,
) -> str:
    """RESULTS.md's text; figure links are relative to ``out``'s folder. ``repo``: the
    workflow's repository, whose commit the document names (None: unknown).
    ``deploy_tables``: the deployment tables (config deploy), a section of their own;
    ``latency_table`` likewise (a run with l0-latency)."""
    version = code_version(repo) if repo is not None else "unknown (no repository given)"
    sections = [
        ("Data", data_section(data_report)),
        ("Teacher", teacher_section(teacher)),
        ("Tables", tables_section(tables)),
        ("Speed", speed_section(speed)),
        *([("Latency model", latency_section(latency_table))] if latency_table else []),
        *([("Deployment", deploy_section(deploy_tables))] if deploy_tables else []),
        ("Figures", figures_section(figures, Path(out).parent)),
        ("Stage times", stages_section(benchmarks, exclude_benchmarks)),
        ("Code", f"Code version: {version}.\n"),
    ]
    head = (
        f"# Results of run `{run}`\n\n"
        "Written by the workflow (rule results_doc) from this run's own result files, "
        "named in each section; regenerate it rather than edit it.\n"
    )
    return head + "".join(f"\n## {title}\n\n{body}" for title, body in sections)


def write_document(out: str | os.PathLike, **kwargs) -> str:
    """Build the document (``build_document``'s arguments) and write it to ``out``."""
    text = build_document(out=out, **kwargs)
    with atomic_open(out) as f:
        f.write(text)
    return text
