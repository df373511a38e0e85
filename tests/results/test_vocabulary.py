import json

import pytest

from asrprune.data.manifest import Utterance, write_manifest
from asrprune.errors import AsrpruneError
from asrprune.results.vocabulary import model_vocabulary_errors, vocabulary_errors

REFS = ["THE CAT SAT", "NAOMI WEPT", "AND HE WENT"]
HYPS = ["THE KAT SAT", "NOAMY", "AND HE WENT OUT"]
KNOWN = {"THE", "CAT", "SAT", "WEPT", "AND", "HE", "WENT", "OUT"}


def test_errors_are_split_by_the_words_novelty():
    v = vocabulary_errors(REFS, HYPS, KNOWN, "test-clean")
    assert (v.ref_words, v.unseen_ref_words) == (8, 1)  # NAOMI
    # KAT and NOAMY substitute, WEPT (or NAOMI) is deleted, OUT is inserted
    assert (v.errors, v.substitutions) == (4, 2)
    assert v.errors_on_unseen == 1  # NAOMI, substituted or deleted
    assert v.nonword_substitutions == 2  # KAT, NOAMY
    assert v.points(v.errors) == pytest.approx(50.0)
    # a known hypothesis word is a real-word substitution, not a non-word
    assert vocabulary_errors(REFS, HYPS, KNOWN | {"KAT"}).nonword_substitutions == 1


def test_mismatched_or_missing_hypotheses_are_named(tmp_path):
    with pytest.raises(AsrpruneError, match="dev: 3 references, 2 hypotheses"):
        vocabulary_errors(REFS, HYPS[:2], KNOWN, "dev")
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [Utterance("u1", "u1.flac", 1.0, " ".join(KNOWN), "s")])
    with pytest.raises(AsrpruneError, match=r"teacher\.hyps.*dev\.jsonl: no hypotheses"):
        model_vocabulary_errors(tmp_path, "teacher", manifest, ["dev"])

    hyps = tmp_path / "teacher.hyps"
    hyps.mkdir()
    rows = [
        {"id": f"u{i}", "ref": r, "hyp": h} for i, (r, h) in enumerate(zip(REFS, HYPS, strict=True))
    ]
    (hyps / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (v,) = model_vocabulary_errors(tmp_path, "teacher", manifest, ["dev"])
    assert (v.split, v.nonword_substitutions, v.errors_on_unseen) == ("dev", 2, 1)
