from asrprune.data.checks import CheckSettings, prepare_split
from asrprune.data.manifest import SPLITS, Utterance, write_manifest
from asrprune.data.report import build_report
from tests.builders import make_utterance


def test_report_counts_per_split(tmp_path):
    manifests, excluded = {}, {}
    for i, split in enumerate(SPLITS):
        utts = [
            make_utterance(tmp_path / split, f"{split}-{n}", seconds=1.0 + n, speaker=f"s{n % 2}")
            for n in range(i + 2)
        ]
        utts.append(Utterance(f"{split}-bad", str(tmp_path / "nope.flac"), 1.0, "A", "s"))
        raw = tmp_path / f"{split}.raw.jsonl"
        write_manifest(raw, utts)
        manifests[split] = str(tmp_path / f"{split}.jsonl")
        excluded[split] = str(tmp_path / f"{split}.excluded.json")
        prepare_split(str(raw), manifests[split], excluded[split], CheckSettings(), 1)
    report = build_report("embedded", manifests, excluded)
    train = report["splits"]["train"]
    assert train["utterances"] == 2
    assert train["hours"] == round((1.0 + 2.0) / 3600, 3)
    assert train["speakers"] == 2
    assert train["excluded"] == 1
    assert train["excluded_by_reason"] == {"unreadable_audio": 1}
    assert report["splits"]["test-other"]["utterances"] == 5
    assert report["total"]["utterances"] == 2 + 3 + 4 + 5
    assert report["total"]["excluded"] == 4
