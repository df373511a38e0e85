"""Evaluation: decode splits with a model file, score WER with jiwer, write JSON and hypotheses.

WER is corpus-level, in percent: 100 * (substitutions + deletions + insertions) / reference
words, summed over every utterance of a split (not a mean of per-utterance rates). Sizes
are the encoder's, as in the paper: ``size_mb`` is the encoder's fp32 weights in decimal
megabytes (parameters * 4 / 1e6).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer
import torch

from asrprune.data.batching import UtteranceDataset
from asrprune.decode import Way, decode_dataset_ways
from asrprune.device import resolve_device
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open, write_json
from asrprune.lm import NO_LM, LmSettings, transcript_lm
from asrprune.model import Transducer
from asrprune.model.decoding import MAX_SYMBOLS_PER_FRAME
from asrprune.model.lowrank import low_rank_layers
from asrprune.model_file import open_model_file

BYTES_PER_PARAM = 4  # fp32
FULL_HYPS = "full"  # the subfolder of <model>.hyps/ with the full decoding's hypotheses
MB = 1e6  # decimal megabytes
FLOPS_FRAMES = 1000  # FLOPs are reported for a 10 s utterance


# -----------------------------------------------------------------------------
# scoring


@dataclass(frozen=True)
class WordErrors:
    """Corpus-level word error counts; ``wer`` in percent."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    utterances: int


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> WordErrors:
    """Align every (reference, hypothesis) pair and sum the errors over the corpus.

    References must be non-empty (the data checks exclude empty transcripts); hypotheses
    may be empty (every reference word is then a deletion).
    """
    if len(refs) != len(hyps):
        raise AsrpruneError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise AsrpruneError("no utterance to score")
    empty = [i for i, r in enumerate(refs) if not r.split()]
    if empty:
        raise AsrpruneError(f"reference {empty[0]} is empty; WER is undefined for it")
    out = jiwer.process_words(list(refs), list(hyps))
    n = out.substitutions + out.deletions + out.hits
    errors = out.substitutions + out.deletions + out.insertions
    return WordErrors(
        wer=100.0 * errors / n,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions,
        hits=out.hits,
        ref_words=n,
        utterances=len(refs),
    )


# -----------------------------------------------------------------------------
# evaluating a model file


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _decoding_settings(beam: int, batch_frames: int, lm: dict | None = None) -> dict:
    """How a split was decoded, as metrics JSON records it; ``lm`` the fused n-gram's."""
    return {
        "method": "greedy" if beam <= 1 else "beam",
        "beam": max(beam, 1),
        "max_symbols_per_frame": MAX_SYMBOLS_PER_FRAME if beam <= 1 else 1,
        "batch_frames": batch_frames,
        "cmvn": "model",
        "lm": lm,
    }


def _score_splits(
    model: Transducer,
    datasets: Mapping[str, UtteranceDataset],
    ways: Sequence[tuple[Way, Path, str]],
    *,
    batch_frames: int,
    device: torch.device,
) -> list[dict]:
    """Decode every split every way of ``ways`` ((beam, fusion), hyps folder, label), the
    encoder run once per batch for all: per way {"wer", "errors", "decode_seconds"}, the
    hypotheses written to ``<hyps folder>/<split>.jsonl``. A way's seconds are those
    decoding the split that way alone would take."""
    scored = [{"wer": {}, "errors": {}, "decode_seconds": {}} for _ in ways]
    for split, dataset in datasets.items():
        decoded = decode_dataset_ways(
            model, dataset, [w for w, _, _ in ways], batch_frames=batch_frames, device=device
        )
        for out, (_, hyps_dir, label), (rows, seconds) in zip(scored, ways, decoded, strict=True):
            scores = word_errors([r["ref"] for r in rows], [r["hyp"] for r in rows])
            _write_jsonl(hyps_dir / f"{split}.jsonl", rows)
            out["wer"][split] = scores.wer
            out["errors"][split] = {**asdict(scores), "skipped": len(dataset.dropped)}
            out["decode_seconds"][split] = seconds
            print(
                f"{label} {split}: WER {scores.wer:.2f}% over {scores.utterances} utterances "
                f"({scores.ref_words} words, {len(dataset.dropped)} skipped) in {seconds:.1f} s",
                file=sys.stderr,
            )
    return scored


def evaluate_model(
    model_path: str | os.PathLike,
    splits: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]],
    out_json: str | os.PathLike,
    hyps_dir: str | os.PathLike,
    *,
    beam: int = 0,
    batch_frames: int = 20000,
    threads: int | None = None,
    mlflow_ids: str | os.PathLike | None = None,
    name: str = "model",
    tags: Mapping[str, str] | None = None,
    device: str | torch.device | None = None,
    lm: LmSettings = NO_LM,
    lm_text: str | os.PathLike | None = None,
    full: bool = True,
) -> dict:
    """Decode every split with the model file at ``model_path``; write scores and hypotheses.

    Every model is decoded by batched greedy search: ``wer``, ``errors``, ``decoding`` and
    ``hyps_dir/<split>.jsonl``, the same cheap decoding for every model of a run, which the
    tables compare. With ``full`` and a beam search (``beam`` >= 2, with ``lm`` if given), the
    splits are decoded that way too, into ``full`` ({"decoding", "wer", "errors",
    "decode_seconds"}) and ``hyps_dir/full/<split>.jsonl``.

    Args:
        splits: split name -> (manifest, feature store folder).
        out_json: summary: ``wer`` {split: percent}, ``errors`` {split: counts},
            ``encoder_params``, ``prunable_params`` (the encoder blocks), ``total_params``,
            ``size_mb`` (encoder fp32, params * 4 / 1e6), ``sparsity`` and
            ``flops_sparsity`` (fractions of the full blocks' parameters and FLOPs removed),
            ``encoder_flops`` (10 s of audio), ``decoding`` settings, and ``full``.
        hyps_dir: one ``<split>.jsonl`` per split, a ``{"id", "ref", "hyp"}`` line per
            utterance in manifest order (``full/<split>.jsonl`` likewise).
        beam: the full decoding's beam: 0 or 1 is greedy search (no full decoding then).
        batch_frames: decoding batch budget, padded size in 10 ms frames.
        threads: torch intra-op threads (None: leave torch's default).
        mlflow_ids: ids file from ``asrprune mlflow-init``; metrics go to a child run named
            ``evaluate-<name>`` tagged stage=evaluate, model=<name> (plus ``tags``), or
            to a spool file if the store does not answer (asrprune.tracking).
        device: None picks CUDA when available.
        lm: shallow fusion of a token n-gram in the full decoding's beam search (order 0:
            none), counted on ``lm_text``: the run's ``data/lm_text.txt``, or a manifest
            (its transcripts).
        full: whether to decode the full way too (the workflow: the teacher and the pruned
            models at ``evaluate.full_sparsities``).
    Features are normalised with the model file's own CMVN, never a split's.
    """
    if not splits:
        raise AsrpruneError("evaluate: no split to decode")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    loaded = open_model_file(model_path, map_location=dev)
    model, tokenizer, cmvn = loaded.model, loaded.tokenizer, loaded.cmvn
    fusion = transcript_lm(lm_text, tokenizer, lm, beam) if full else None
    full = full and beam > 1  # greedy search without an LM is decoded once only
    counts = model.param_counts()
    result: dict = {
        "name": name,
        "model": str(model_path),
        "encoder_params": counts.encoder,
        "prunable_params": counts.prunable,
        "total_params": counts.total,
        "size_mb": counts.encoder * BYTES_PER_PARAM / MB,
        "size_definition": "encoder parameters * 4 bytes (fp32) / 1e6",
        "decoding": _decoding_settings(0, batch_frames),
        # sparsity / flops_sparsity: fractions of the blocks' parameters / FLOPs removed;
        # FLOPs counted for a 10 s utterance
        **model.size_report(FLOPS_FRAMES),
        "structure": model.structure.to_dict(),
        # the SVD baseline's factored layers, which the structure does not show
        "low_rank": low_rank_layers(model) if isinstance(model, Transducer) else [],
        "model_extra": loaded.extra,
    }
    if not isinstance(model, Transducer):  # an exported folder on ONNX Runtime
        result["export"] = {
            "precision": loaded.extra["precision"],
            "source": loaded.extra["source"],
            "onnx_mb": model.onnx_bytes() / MB,
        }
    datasets = {
        split: UtteranceDataset(manifest, store, tokenizer, cmvn)
        for split, (manifest, store) in splits.items()
    }
    hyps_dir = Path(hyps_dir)
    ways = [((0, None), hyps_dir, f"{name} greedy")]
    if full:
        ways.append(((beam, fusion), hyps_dir / FULL_HYPS, f"{name} beam {beam}"))
    greedy, *rest = _score_splits(model, datasets, ways, batch_frames=batch_frames, device=dev)
    result |= greedy
    if full:
        fused = {**asdict(lm), "text": str(lm_text)} if fusion else None
        decoding = _decoding_settings(beam, batch_frames, fused)
        result["full"] = {"decoding": decoding, **rest[0]}
    write_json(out_json, result)
    if mlflow_ids:
        _log_evaluation(mlflow_ids, name, tags, result, out_json)
    return result


def _log_evaluation(ids_file, name: str, tags, result: dict, out_json) -> None:
    from asrprune.tracking import child_run, flatten

    run_tags = {"stage": "evaluate", "model": name, **dict(tags or {})}
    with child_run(ids_file, f"evaluate-{name}", run_tags) as run:
        params = {"model_path": result["model"], **flatten(result["decoding"], "decode.")}
        full = result.get("full")
        if full:
            params |= flatten(full["decoding"], "decode_full.")
            metrics = {f"wer_full.{split}": wer for split, wer in full["wer"].items()}
        else:
            metrics = {}
        run.log_params(params)
        metrics |= {f"wer.{split}": wer for split, wer in result["wer"].items()}
        for split, errors in result["errors"].items():
            for key in ("substitutions", "deletions", "insertions", "ref_words", "utterances"):
                metrics[f"{key}.{split}"] = float(errors[key])
        for key in ("encoder_params", "prunable_params", "total_params", "size_mb"):
            metrics[key] = float(result[key])
        run.log_metrics(metrics)
        run.log_artifact(out_json)
