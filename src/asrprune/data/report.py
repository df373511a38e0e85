"""The data report: per split, what is in it and what was excluded and why."""

from __future__ import annotations

from collections.abc import Sequence

from asrprune.data.manifest import SPLITS, read_manifest
from asrprune.io import read_json


def split_summary(manifest: str, excluded: str) -> dict:
    utterances = read_manifest(manifest)
    excl = read_json(excluded)
    seconds = sum(u.duration for u in utterances)
    return {
        "utterances": len(utterances),
        "hours": round(seconds / 3600, 3),
        "speakers": len({u.speaker for u in utterances}),
        "mean_seconds": round(seconds / len(utterances), 2) if utterances else 0.0,
        "words": sum(len(u.text.split()) for u in utterances),
        "excluded": sum(excl["counts"].values()),
        "excluded_by_reason": {k: v for k, v in excl["counts"].items() if v},
    }


def build_report(
    source: str,
    manifests: dict[str, str],
    excluded: dict[str, str],
    splits: Sequence[str] = SPLITS,
    composition: dict | None = None,
) -> dict:
    """Summarise every split; ``manifests`` and ``excluded`` map split name to file.

    ``composition`` is the embedded corpus's summary (``corpus/summary.json``): its
    utterances per text domain and TTS engine join each split's row.
    """
    splits = {s: split_summary(manifests[s], excluded[s]) for s in splits}
    for name, row in splits.items():
        made = (composition or {}).get("splits", {}).get(name, {})
        for key in ("domains", "engines"):
            if key in made:
                row[key] = made[key]
    return {
        "source": source,
        "splits": splits,
        "total": {
            "utterances": sum(s["utterances"] for s in splits.values()),
            "hours": round(sum(s["hours"] for s in splits.values()), 3),
            "excluded": sum(s["excluded"] for s in splits.values()),
        },
    }
