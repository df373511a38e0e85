"""Command line: ``asrprune <command>``. Each workflow rule runs exactly one command.

Commands take their settings as flags or as JSON (``--settings``: one config section, or
for ``prune`` what its method reads of config prune), never by reading the global config,
so Snakemake reruns exactly the jobs whose settings changed. Modules are imported inside
each command: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from asrprune.errors import AsrpruneError

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {}


def command(name: str, help: str):
    def register(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return register


@command("mlflow-init", "create the MLflow store, experiment and parent run; write their ids")
def _mlflow_init(a):
    from asrprune.tracking import init_tracking

    ids = init_tracking(a.store, a.experiment, a.run, a.out, require=a.require)
    print(json.dumps(ids, indent=2))


@command("mlflow-sync", "replay the MLflow runs that jobs spooled while the store was down")
def _mlflow_sync(a):
    from asrprune.tracking import sync_spool

    replayed, skipped = sync_spool(a.ids, a.uri, a.include_open)
    for spool in replayed:
        print(f"replayed {spool}")
    for spool in skipped:
        print(f"skipped {spool}: its run has not ended (--include-open replays it)")
    print(f"{len(replayed)} replayed, {len(skipped)} skipped")


@command("corpus-embedded", "synthesise the embedded corpus; write raw manifests per split")
def _corpus_embedded(a):
    from asrprune.data.corpus import EmbeddedCorpusSettings, build_embedded_corpus
    from asrprune.io import write_json

    settings = EmbeddedCorpusSettings.from_dict(a.settings)
    summary = build_embedded_corpus(settings, Path(a.out), a.threads)
    write_json(Path(a.out) / "summary.json", summary)
    print(json.dumps(summary, indent=2))


@command("corpus-librispeech", "write raw manifests per split from an extracted LibriSpeech")
def _corpus_librispeech(a):
    from asrprune.data.librispeech import split_utterances
    from asrprune.data.manifest import SPLITS, write_manifest

    subsets = json.loads(a.subsets)
    for split in SPLITS:
        n = write_manifest(Path(a.out) / f"{split}.jsonl", split_utterances(a.root, subsets[split]))
        print(f"{split}: {n} utterances from {', '.join(subsets[split])}")


@command("download-librispeech", "download and unpack one LibriSpeech subset (needs internet)")
def _download_librispeech(a):
    from asrprune.data.librispeech import download_subset

    print(download_subset(a.mirror, a.subset, a.dest))


@command("check-split", "check every utterance of a raw manifest; write kept and excluded")
def _check_split(a):
    from asrprune.config import settings_from_dict
    from asrprune.data.checks import CheckSettings, prepare_split

    settings = settings_from_dict(CheckSettings, a.settings, "data.checks")
    kept, excluded = prepare_split(a.raw, a.manifest, a.excluded, settings, a.threads)
    print(f"{a.raw}: kept {kept}, excluded {excluded}")


@command("data-report", "summarise the splits (utterances, hours, speakers, exclusions)")
def _data_report(a):
    from asrprune.data.report import build_report
    from asrprune.io import read_json, write_json
    from asrprune.tracking import child_run, flatten

    manifests = {s: str(Path(a.manifests) / f"{s}.jsonl") for s in a.splits}
    excluded = {s: str(Path(a.excluded) / f"{s}.json") for s in a.splits}
    composition = read_json(a.composition) if a.composition else None
    report = build_report(a.source, manifests, excluded, a.splits, composition)
    write_json(a.out, report)
    if a.mlflow:
        with child_run(a.mlflow, "data", {"stage": "data"}) as run:
            run.log_param("source", a.source)
            run.log_metrics(
                {
                    k: float(v)
                    for k, v in flatten(report["splits"]).items()
                    if isinstance(v, int | float)
                }
            )
            run.log_artifact(a.out)
    print(json.dumps(report, indent=2))


@command("train-bpe", "train the SentencePiece BPE model on a manifest's transcripts")
def _train_bpe(a):
    from asrprune.data.manifest import read_manifest
    from asrprune.data.tokenizer import train_bpe

    texts = [u.text for u in read_manifest(a.manifest)]
    train_bpe(texts, a.vocab_size, a.out)


@command("lm-text", "what the full decoding's n-gram is counted on: transcripts or text pool")
def _lm_text(a):
    from asrprune.data.corpus import EmbeddedCorpusSettings
    from asrprune.data.lm_text import pool_texts, write_lm_text
    from asrprune.data.manifest import read_manifest

    if a.source == "pool":
        if a.settings is None:
            raise AsrpruneError("lm-text --source pool needs --settings (data.embedded)")
        settings = EmbeddedCorpusSettings.from_dict(a.settings)
        domains = settings.training_domains
        texts = pool_texts(domains, settings.newtext_domain, a.cache)
    else:
        texts = [u.text for u in read_manifest(a.train)]
    evaluation = {Path(m).stem: m for m in a.evaluation}
    counts = write_lm_text(texts, a.out, evaluation)
    print(json.dumps({"source": a.source, **counts}))


@command("extract-features", "compute 80-dim log-mel features of a manifest into a store")
def _extract_features(a):
    from asrprune.data.features import extract_features

    extract_features(a.manifest, a.out, a.threads)


@command("cmvn", "mean and variance of the training features, for their normalisation")
def _cmvn(a):
    from asrprune.data.features import FeatureStore, compute_cmvn

    compute_cmvn(FeatureStore(a.features), per_utterance=a.per_utterance).save(a.out)


@command("train-teacher", "train the Conformer-Transducer teacher (resumes after a kill)")
def _train_teacher(a):
    from asrprune import distributed
    from asrprune.train import train_teacher

    data = Path(a.data)
    with distributed.session() as world:  # data parallel under torchrun
        result = train_teacher(
            train_manifest=data / "manifests/train.jsonl",
            train_features=data / "features/train",
            dev_manifest=data / "manifests/dev.jsonl",
            dev_features=data / "features/dev",
            tokenizer_path=data / "bpe.model",
            cmvn_path=data / "cmvn.json",
            model_config=a.model,
            settings=a.settings,
            out_model=a.out,
            work_dir=a.work_dir,
            mlflow_ids=a.mlflow,
            run_name="teacher",
            threads=a.threads,
        )
    if world.main:
        print(json.dumps(result, indent=2, default=str))


@command("prune", "one pruning job: prune the teacher, compact, fine-tune (resumable)")
def _prune(a):
    from asrprune import distributed
    from asrprune.pruning.job import run_prune, run_splits

    # joined before the job moves its teacher to "cuda": under torchrun, this rank's GPU
    with distributed.session() as world:
        summary = run_prune(
            teacher_path=a.teacher,
            splits=run_splits(a.data),
            method_name=a.method,
            sparsity=a.sparsity,
            settings=a.settings,
            out_model=a.out,
            out_summary=a.summary,
            work_dir=a.work_dir,
            mlflow_ids=a.mlflow,
            threads=a.threads,
            latency_table=a.latency_table,
        )
    if world.main:
        keys = ("name", "sparsity", "flops_sparsity", "prune_dev_wer", "finetune_dev_wer")
        print(json.dumps({k: summary.get(k) for k in keys}, indent=2))


@command("evaluate", "WER per split, size and parameter counts of one model file")
def _evaluate(a):
    from asrprune.config import settings_from_dict
    from asrprune.evaluate import evaluate_model
    from asrprune.lm import LmSettings, lm_text_or_transcripts

    data = Path(a.data)
    splits = {s: (data / f"manifests/{s}.jsonl", data / f"features/{s}") for s in a.splits}
    metrics = evaluate_model(
        a.model,
        splits,
        a.out,
        a.hyps,
        beam=a.beam,
        batch_frames=a.batch_frames,
        threads=a.threads,
        mlflow_ids=a.mlflow,
        name=a.name,
        lm=settings_from_dict(LmSettings, a.lm, "--lm"),
        lm_text=lm_text_or_transcripts(a.lm_text, data),
        full=a.full,
    )
    print(json.dumps(metrics["wer"], indent=2))


@command("speed", "encoder real-time factor of the teacher and every model, on one thread")
def _speed(a):
    from asrprune.speed import SpeedSettings, measure_speed

    settings = SpeedSettings(a.utterances, a.warmup_rounds, a.rounds)
    rows = measure_speed(a.teacher, a.models, a.data, a.out, settings)
    for row in rows:
        print(f"{row['model']}: RTF {row['rtf_median']:.4f} ({row['rtf_ratio']:.2f} x teacher)")


@command("latency-table", "time a Conformer block's parts at many widths: l0-latency's budget")
def _latency_table(a):
    from asrprune.config import settings_from_dict
    from asrprune.latency_table import TableSettings, measure_latency_table
    from asrprune.pruning.settings import LatencyProfile

    profile = LatencyProfile(a.device, a.backend, a.threads)
    settings = settings_from_dict(TableSettings, a.settings or {}, "prune.latency")
    table = measure_latency_table(a.teacher, a.data, a.out, profile, settings)
    print(f"{a.out}: teacher encoder {table['encoder']['measured']:.4f} s ({profile.name})")


@command("speed-deploy", "RTF per backend (PyTorch, ONNX Runtime fp32 and int8) and thread count")
def _speed_deploy(a):
    from asrprune.config import settings_from_dict
    from asrprune.deploy.speed import DeploySpeedSettings, exports_by_model, measure_deploy_speed
    from asrprune.lm import LmSettings, lm_text_or_transcripts, transcript_lm
    from asrprune.model_file import open_model_file

    settings = settings_from_dict(DeploySpeedSettings, a.settings, "deploy")
    lm = settings_from_dict(LmSettings, a.lm, "--lm")
    tokenizer = open_model_file(a.models[0]).tokenizer
    fusion = transcript_lm(lm_text_or_transcripts(a.lm_text, a.data), tokenizer, lm, a.beam)
    rows = measure_deploy_speed(
        a.models, exports_by_model(a.exports), a.data, a.out, settings, a.cores, a.beam, fusion
    )
    for r in rows:
        print(
            f"{r['model']} {r['backend']} {r['precision']} {r['threads']} thread(s): "
            f"encoder RTF {r['rtf_encoder']:.4f} ({r['encoder_ratio']:.2f} x teacher, "
            f"{r['vs_torch']:.2f} x faster than torch)"
        )


@command("transcribe", "print <path><TAB><transcript> for each audio file (any rate, wav/flac)")
def _transcribe(a):
    from asrprune.config import settings_from_dict
    from asrprune.lm import NO_LM, LmSettings
    from asrprune.transcribe import transcribe_each

    if a.no_lm and a.lm is not None:
        raise AsrpruneError("--lm and --no-lm: give one of them")
    lm = (
        NO_LM if a.no_lm else None if a.lm is None else settings_from_dict(LmSettings, a.lm, "--lm")
    )
    results = transcribe_each(
        a.model, a.audio, beam=a.beam, threads=a.threads, lm=lm, lm_text=a.lm_text
    )
    failed = 0
    # a line per file as soon as it is decoded: a bad file, or a kill, costs no other line
    for t in results:
        if t.error is None:
            print(f"{t.path}\t{t.text}", flush=True)
        else:
            failed += 1
            print(f"asrprune transcribe: error: {t.error}", file=sys.stderr, flush=True)
    if failed:
        print(
            f"asrprune transcribe: error: {failed} of {len(a.audio)} files failed",
            file=sys.stderr,
        )
        return 1
    return 0


@command("export", "an ONNX folder (encoder, decoder, joiner, tokens), checked against PyTorch")
def _export(a):
    from asrprune.config import settings_from_dict
    from asrprune.deploy.export import export_model
    from asrprune.lm import LmSettings

    lm = settings_from_dict(LmSettings, a.lm, "--lm")
    manifest = export_model(a.model, a.out, a.int8, a.beam, lm, a.lm_text)
    print(json.dumps({"out": a.out, "precision": manifest["precision"], **manifest["check"]}))


@command("tables", "Table 1 and Table 2 (ablations) as CSV and Markdown, from metrics and speed")
def _tables(a):
    from asrprune.results.layout import Replicates
    from asrprune.results.tables import write_tables

    replicates = Replicates(a.seeds, a.seed_sparsities, a.seed_methods)
    paths = write_tables(
        a.metrics_dir,
        a.speed,
        a.methods,
        a.sparsities,
        a.out_dir,
        replicates,
        domain_shift=a.domain_shift,
        full_sparsities=a.full_sparsities,
    )
    for path in paths:
        print(path)


@command("figures", "Fig. 2a, 2b, WER against RTF and kept against target, as PNG and PDF")
def _figures(a):
    from asrprune.results.figures import write_figures

    paths = write_figures(
        metrics_dir=a.metrics_dir,
        summaries=a.summaries,
        speed_path=a.speed,
        teacher_model=a.teacher,
        methods=a.methods,
        sparsities=a.sparsities,
        out_dir=a.out_dir,
        deploy_table=a.deploy_table,
        speed_deploy=a.speed_deploy,
    )
    for path in paths:
        print(path)


@command("deploy-tables", "exports against PyTorch (WER, agreement, size) and speed per backend")
def _deploy_tables(a):
    from asrprune.results.deploy import write_deploy_tables

    for path in write_deploy_tables(a.metrics_dir, a.speed, a.models, a.out_dir):
        print(path)


@command("latency-check", "latency model against measured encoder time, per model of a run")
def _latency_check(a):
    from asrprune.results.latency import write_latency_table

    for path in write_latency_table(a.table, a.speed, a.metrics_dir, a.models, a.out_dir):
        print(path)


@command("results-doc", "RESULTS.md: the run's data, teacher, tables, speed, figures, times, code")
def _results_doc(a):
    from asrprune.results.document import write_document

    write_document(
        a.out,
        run=a.run,
        data_report=a.data_report,
        teacher=a.teacher,
        tables=a.tables,
        speed=a.speed,
        deploy_tables=a.deploy_tables,
        latency_table=a.latency_table,
        figures=a.figures,
        benchmarks=a.benchmarks,
        exclude_benchmarks=a.exclude_benchmarks,
        repo=a.repo,
    )
    print(a.out)


@command("compare", "paired bootstrap of two models' WER per split: is a really better than b?")
def _compare(a):
    from asrprune.results.layout import Replicates, parse_model_name
    from asrprune.results.significance import compare_jobs

    # with --seeds, each side is its job's replicates, pooled as the significance tables do
    jobs = [
        [name] if a.seeds == 1 else Replicates(a.seeds).names(*parse_model_name(name)[:2])
        for name in (a.a, a.b)
    ]
    rows = compare_jobs(a.metrics_dir, *jobs, a.splits, resamples=a.resamples, seed=a.seed)
    print(f"| split | {a.a} WER % | {a.b} WER % | difference | 95% interval | {a.a} better |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in rows:
        print(
            f"| {c.split} | {c.wer_a:.2f} | {c.wer_b:.2f} | {c.delta:+.2f} | "
            f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}] | {c.a_better:.1%} |"
        )


@command("vocabulary-errors", "a model's word errors on and by words unseen in training text")
def _vocabulary_errors(a):
    from asrprune.results.vocabulary import model_vocabulary_errors

    rows = model_vocabulary_errors(a.metrics_dir, a.model, a.train_manifest, a.splits)
    print(
        "| split | WER % | unseen reference words | errors on them (WER points) |"
        " substitutions | by non-words (WER points) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for v in rows:
        print(
            f"| {v.split} | {v.points(v.errors):.1f} | {v.unseen_ref_words} of {v.ref_words} | "
            f"{v.errors_on_unseen} ({v.points(v.errors_on_unseen):.1f}) | {v.substitutions} | "
            f"{v.nonword_substitutions} ({v.points(v.nonword_substitutions):.1f}) |"
        )


@command("run-name", "print the run name Snakemake resolves for its arguments (after --)")
def _run_name(a):
    from asrprune.results.report import run_name

    print(run_name(a.snakemake_args, a.default_config))


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (threads, say)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}, expected 1 or more")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asrprune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = {name: sub.add_parser(name, help=h, description=h) for name, (_, h) in COMMANDS.items()}

    p["mlflow-init"].add_argument(
        "--store", required=True, help="SQLite file (unless $MLFLOW_TRACKING_URI)"
    )
    p["mlflow-init"].add_argument("--experiment", required=True)
    p["mlflow-init"].add_argument("--run", required=True, help="the workflow's run name")
    p["mlflow-init"].add_argument("--out", required=True, help="JSON file for the ids")
    p["mlflow-init"].add_argument(
        "--require",
        action="store_true",
        help="fail (this job and every job that logs) when the store does not answer, "
        "instead of spooling runs for mlflow-sync",
    )
    p["mlflow-sync"].add_argument("--ids", required=True, help="the run's mlflow/ids.json")
    p["mlflow-sync"].add_argument("--uri", help="the store to replay into (default: the ids')")
    p["mlflow-sync"].add_argument(
        "--include-open", action="store_true", help="replay runs that never ended too"
    )

    from asrprune.data.manifest import ALL_SPLITS, SPLITS

    for name in ("corpus-embedded", "check-split"):
        p[name].add_argument("--settings", required=True, help="the config section, as JSON")
    for name in ("corpus-embedded", "check-split", "extract-features"):
        p[name].add_argument("--threads", type=positive_int, default=1)
    p["corpus-embedded"].add_argument("--out", required=True, help="corpus folder")

    p["corpus-librispeech"].add_argument("--root", required=True, help="extracted LibriSpeech/")
    p["corpus-librispeech"].add_argument("--subsets", required=True, help="split -> subsets, JSON")
    p["corpus-librispeech"].add_argument("--out", required=True, help="folder for raw manifests")

    p["download-librispeech"].add_argument("--mirror", required=True)
    p["download-librispeech"].add_argument("--subset", required=True)
    p["download-librispeech"].add_argument("--dest", required=True, help="the LibriSpeech/ folder")

    p["check-split"].add_argument("--raw", required=True, help="raw manifest")
    p["check-split"].add_argument("--manifest", required=True, help="output: kept utterances")
    p["check-split"].add_argument("--excluded", required=True, help="output: exclusions (JSON)")

    p["data-report"].add_argument("--source", required=True)
    p["data-report"].add_argument("--manifests", required=True, help="folder of <split>.jsonl")
    p["data-report"].add_argument("--excluded", required=True, help="folder of <split>.json")
    p["data-report"].add_argument("--out", required=True)
    p["data-report"].add_argument(
        "--splits", nargs="+", choices=ALL_SPLITS, default=list(SPLITS), help="splits to report"
    )
    p["data-report"].add_argument(
        "--composition", help="the embedded corpus's summary.json (domains and engines)"
    )
    p["data-report"].add_argument("--mlflow", help="ids file from mlflow-init; omit to not log")

    p["train-bpe"].add_argument("--manifest", required=True)
    p["train-bpe"].add_argument("--vocab-size", type=int, required=True)
    p["train-bpe"].add_argument("--out", required=True, help="the .model file")

    p["lm-text"].add_argument("--source", required=True, choices=("transcripts", "pool"))
    p["lm-text"].add_argument("--train", required=True, help="the training manifest")
    p["lm-text"].add_argument(
        "--evaluation", nargs="+", default=[], help="manifests whose text the LM must not see"
    )
    p["lm-text"].add_argument("--settings", help="pool: config data.embedded, JSON")
    p["lm-text"].add_argument("--cache", help="pool: the corpus's sentence cache folder")
    p["lm-text"].add_argument("--out", required=True, help="the text file, one sentence a line")

    p["extract-features"].add_argument("--manifest", required=True)
    p["extract-features"].add_argument("--out", required=True, help="feature store folder")

    p["cmvn"].add_argument("--features", required=True, help="training feature store folder")
    p["cmvn"].add_argument("--out", required=True, help="JSON file")
    p["cmvn"].add_argument(
        "--per-utterance",
        action="store_true",
        help="remove each utterance's own mean first (and at use)",
    )
    p["train-teacher"].add_argument("--data", required=True, help="the run's data/ folder")
    p["train-teacher"].add_argument("--model", required=True, help="model config, as JSON")
    p["train-teacher"].add_argument("--settings", required=True, help="training config, as JSON")
    p["train-teacher"].add_argument("--out", required=True, help="the model file to write")
    p["train-teacher"].add_argument("--work-dir", required=True, help="checkpoints and history")
    p["train-teacher"].add_argument("--mlflow", help="ids file from mlflow-init")

    p["prune"].add_argument("--teacher", required=True, help="the teacher's model file")
    p["prune"].add_argument("--data", required=True, help="the run's data/ folder")
    p["prune"].add_argument("--method", required=True, help="l0-params, l0-flops, omp, ...")
    p["prune"].add_argument("--sparsity", type=float, required=True, help="target, e.g. 0.5")
    p["prune"].add_argument(
        "--settings",
        required=True,
        help="what the method reads of config prune, as JSON: section -> settings, "
        'e.g. {"l0": {"reference_seconds": 10}, "train": {"max_steps": 200}, '
        '"finetune": {...}} for omp (asrprune.pruning.settings)',
    )
    p["prune"].add_argument("--out", required=True, help="the compact model file to write")
    p["prune"].add_argument("--summary", required=True, help="masks, structure, history")
    p["prune"].add_argument("--work-dir", required=True, help="checkpoints of both phases")
    p["prune"].add_argument("--mlflow", help="ids file from mlflow-init")
    p["prune"].add_argument(
        "--latency-table", help="the latency table (asrprune latency-table) l0-latency needs"
    )

    p["evaluate"].add_argument(
        "--model", required=True, help="model file, or a folder of asrprune export"
    )
    p["evaluate"].add_argument("--data", required=True, help="the run's data/ folder")
    # every split but train by default: decoding train costs more than the rest together
    p["evaluate"].add_argument(
        "--splits",
        nargs="+",
        choices=ALL_SPLITS[1:],
        default=list(SPLITS[1:]),
        help="splits to decode",
    )
    p["evaluate"].add_argument("--name", required=True, help="model name (e.g. teacher)")
    p["evaluate"].add_argument("--out", required=True, help="metrics JSON")
    p["evaluate"].add_argument("--hyps", required=True, help="folder for <split>.jsonl hypotheses")
    p["evaluate"].add_argument("--batch-frames", type=int, default=20000)
    p["evaluate"].add_argument(
        "--full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="besides greedy search, decode with --beam and --lm (default: yes)",
    )
    p["evaluate"].add_argument("--mlflow", help="ids file from mlflow-init")

    p["latency-table"].add_argument("--teacher", required=True, help="the teacher's model file")
    p["latency-table"].add_argument("--data", required=True, help="the run's data/ folder")
    p["latency-table"].add_argument("--out", required=True, help="the JSON table to write")
    p["latency-table"].add_argument("--device", default="cpu", help="cpu or cuda")
    p["latency-table"].add_argument("--backend", default="torch", help="torch or onnxruntime")
    p["latency-table"].add_argument(
        "--threads", type=positive_int, default=1, help="intra-op threads"
    )
    p["latency-table"].add_argument(
        "--settings", help="JSON: utterances, warmup_rounds, rounds, width_points, unit_points"
    )
    p["speed"].add_argument("--teacher", required=True, help="the teacher's model file")
    p["speed"].add_argument("--models", nargs="*", default=[], help="other model files")
    p["speed"].add_argument("--data", required=True, help="the run's data/ folder")
    p["speed"].add_argument("--out", required=True, help="the CSV file to write")
    p["speed"].add_argument("--utterances", type=int, default=20, help="test-clean utterances")
    p["speed"].add_argument("--warmup-rounds", type=int, default=2, help="untimed rounds first")
    p["speed"].add_argument("--rounds", type=int, default=10, help="timed rounds")

    p["speed-deploy"].add_argument(
        "--models", nargs="+", required=True, help="model files, the teacher's first"
    )
    p["speed-deploy"].add_argument(
        "--exports", nargs="+", required=True, help="export folders .../<model>/<precision>"
    )
    p["speed-deploy"].add_argument("--data", required=True, help="the run's data/ folder")
    p["speed-deploy"].add_argument("--out", required=True, help="the CSV file to write")
    p["speed-deploy"].add_argument(
        "--settings", default="{}", help="config deploy's timing keys, as JSON"
    )
    p["speed-deploy"].add_argument(
        "--cores", type=positive_int, required=True, help="what thread count 0 means"
    )
    p["speed-deploy"].add_argument(
        "--beam", type=int, default=0, help="the full decoding's beam (0: greedy only)"
    )
    p["speed-deploy"].add_argument(
        "--lm", default="{}", help='config evaluate.lm as JSON, e.g. {"order": 6} (no LM)'
    )
    p["speed-deploy"].add_argument(
        "--lm-text", help="what the LM is counted on (default: DATA/manifests/train.jsonl)"
    )

    p["export"].add_argument("--model", required=True, help="a model file of the workflow")
    p["export"].add_argument("--out", required=True, help="the folder to write (replaced)")
    p["export"].add_argument(
        "--int8", action="store_true", help="dynamic int8 weights of MatMul and Gemm"
    )
    p["export"].add_argument(
        "--beam", type=int, default=0, help="the beam it decodes with by default (0: greedy)"
    )
    p["export"].add_argument(
        "--lm", default="{}", help="its LM, as config evaluate.lm in JSON (default: none)"
    )
    p["export"].add_argument(
        "--lm-text", help="with --lm: what to count it on (text file or manifest)"
    )

    p["transcribe"].add_argument(
        "--model",
        required=True,
        help="a model file of the workflow, or a folder of asrprune export",
    )
    p["transcribe"].add_argument("audio", nargs="+", help="wav or flac files, any sample rate")
    p["transcribe"].add_argument(
        "--lm-text", help="with --lm: what to count it on (the run's data/lm_text.txt)"
    )

    p["compare"].add_argument("a", help="model name, e.g. l0-params-s0.5")
    p["compare"].add_argument("b", help="model name, e.g. svd-s0.5")
    p["compare"].add_argument(
        "--metrics-dir", default="results/embedded/metrics", help="the run's metrics/ folder"
    )
    p["compare"].add_argument(
        "--splits",
        nargs="+",
        default=["test-clean", "test-other"],
        help="greedy search's splits, or full/<split> for the full decoding",
    )
    p["compare"].add_argument(
        "--seeds", type=positive_int, default=1, help="pool each model's replicates 0 .. seeds-1"
    )
    p["compare"].add_argument("--resamples", type=int, default=2000)
    p["compare"].add_argument("--seed", type=int, default=0)
    p["vocabulary-errors"].add_argument(
        "--metrics-dir", required=True, help="results/<run>/metrics"
    )
    p["vocabulary-errors"].add_argument("--model", required=True, help="model name, e.g. teacher")
    p["vocabulary-errors"].add_argument(
        "--train-manifest", required=True, help="results/<run>/data/manifests/train.jsonl"
    )
    p["vocabulary-errors"].add_argument(
        "--splits", nargs="+", default=["dev", "test-clean", "test-other"]
    )

    for name in ("tables", "figures"):
        p[name].add_argument("--metrics-dir", required=True, help="folder of <model>.json")
        p[name].add_argument("--speed", required=True, help="speed.csv of rule speed")
        p[name].add_argument("--methods", nargs="+", required=True, help="in table order")
        p[name].add_argument("--sparsities", nargs="+", type=float, required=True)
        p[name].add_argument("--out-dir", required=True)
    p["tables"].add_argument(
        "--seeds", type=positive_int, default=1, help="replicates per job (config prune.seeds)"
    )
    p["tables"].add_argument(
        "--seed-sparsities", nargs="*", type=float, help="where they run (default: every one)"
    )
    p["tables"].add_argument(
        "--seed-methods", nargs="*", help="the methods replicated (default: every one)"
    )
    p["tables"].add_argument(
        "--full-sparsities",
        nargs="*",
        type=float,
        default=[],
        help="sparsities whose models have the full decoding too: significance tests both",
    )
    p["tables"].add_argument(
        "--domain-shift",
        action="store_true",
        help="also the in- against out-of-domain table (pruned models decoded on test-newtext)",
    )
    p["figures"].add_argument("--summaries", nargs="*", default=[], help="L0 jobs' summaries")
    p["figures"].add_argument("--deploy-table", help="tables/deploy.csv (deploy stage)")
    p["figures"].add_argument("--speed-deploy", help="speed_deploy.csv (deploy stage)")
    p["figures"].add_argument("--teacher", required=True, help="the teacher's model file")

    p["deploy-tables"].add_argument("--metrics-dir", required=True, help="the run's metrics/")
    p["deploy-tables"].add_argument("--speed", required=True, help="speed_deploy.csv")
    p["deploy-tables"].add_argument("--models", nargs="+", required=True, help="teacher first")
    p["deploy-tables"].add_argument("--out-dir", required=True)
    p["latency-check"].add_argument("--table", required=True, help="the latency table")
    p["latency-check"].add_argument(
        "--speed", required=True, help="speed.csv, or speed_deploy.csv for another profile"
    )
    p["latency-check"].add_argument("--metrics-dir", required=True, help="the run's metrics/")
    p["latency-check"].add_argument("--models", nargs="*", default=[], help="pruned models")
    p["latency-check"].add_argument("--out-dir", required=True)
    p["results-doc"].add_argument(
        "--latency-table", help="tables/latency.md (rule latency_check), when the run has one"
    )
    p["results-doc"].add_argument(
        "--deploy-tables", nargs="*", default=[], help="tables/deploy.md, speed_deploy.md"
    )
    p["results-doc"].add_argument("--run", required=True, help="the run's name")
    p["results-doc"].add_argument("--data-report", required=True, help="data/report.json")
    p["results-doc"].add_argument("--teacher", required=True, help="metrics/teacher.json")
    p["results-doc"].add_argument("--tables", nargs="+", required=True, help="tables/*.md")
    p["results-doc"].add_argument("--speed", required=True, help="speed.csv of rule speed")
    p["results-doc"].add_argument("--figures", nargs="*", default=[], help="figures/*.png")
    p["results-doc"].add_argument("--benchmarks", required=True, help="the run's benchmarks/")
    p["results-doc"].add_argument(
        "--exclude-benchmarks", nargs="*", default=[], help="benchmark files not to count"
    )
    p["results-doc"].add_argument("--repo", help="the workflow's repository (its commit)")
    p["results-doc"].add_argument("--out", required=True, help="the Markdown file to write")

    p["run-name"].add_argument("--default-config", default="config/config.yaml")
    p["run-name"].add_argument("snakemake_args", nargs="*", help="Snakemake's arguments")

    p["evaluate"].add_argument(
        "--lm", default="{}", help='config evaluate.lm as JSON, e.g. {"order": 6} (no LM)'
    )
    p["evaluate"].add_argument("--beam", type=int, default=0, help="beam size; 0 is greedy")
    p["evaluate"].add_argument(
        "--lm-text",
        help="what the LM is counted on: a text file or manifest (default: the training"
        " transcripts, DATA/manifests/train.jsonl)",
    )
    p["transcribe"].add_argument(
        "--lm", help="an LM as config evaluate.lm, JSON (default: the model's, if it has one)"
    )
    p["transcribe"].add_argument(
        "--no-lm", action="store_true", help="no LM, whatever the model says"
    )
    p["transcribe"].add_argument(
        "--beam", type=int, help="beam size; 0 is greedy (default: the model's, else 0)"
    )
    for name in ("train-teacher", "prune", "evaluate", "transcribe"):
        p[name].add_argument("--threads", type=positive_int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        # a command returns nothing, or its exit status (transcribe: 1 if some files failed)
        return COMMANDS[args.command][0](args) or 0
    except AsrpruneError as e:
        print(f"asrprune {args.command}: error: {e}", file=sys.stderr)
        return 2
