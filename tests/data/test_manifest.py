import json
import re

import pytest

from asrprune.data.manifest import Utterance, read_manifest, write_manifest
from asrprune.errors import AsrpruneError


def test_round_trip(tmp_path):
    utts = [
        Utterance("a-1-0", "x/a.flac", 1.25, "HELLO WORLD", "a"),
        Utterance("b-1-0", "x/b.flac", 3.5, "DON'T STOP", "b"),
    ]
    path = tmp_path / "m.jsonl"
    assert write_manifest(path, utts) == 2
    assert read_manifest(path) == utts
    # one JSON object per line, with exactly the documented fields
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(rows[0]) == {"id", "audio", "duration", "text", "speaker"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"id": "a", "audio": "a.flac", "duration": 1, "text": "A"}', "missing ['speaker']"),
        (
            '{"id": "a", "audio": "a", "duration": 1, "text": "A", "speaker": "s", "x": 1}',
            "unknown ['x']",
        ),
        (
            '{"id": "a", "audio": "a", "duration": "long", "text": "A", "speaker": "s"}',
            "duration must be a number",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "ok", "audio": "a", "duration": 1, "text": "A", "speaker": "s"}\n' + line + "\n"
    )
    with pytest.raises(AsrpruneError, match=re.escape(message)) as err:
        read_manifest(path)
    assert f"{path}:2" in str(err.value)


def test_duplicate_ids_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    write_manifest(path, [Utterance("a", "a", 1.0, "A", "s")] * 2)
    with pytest.raises(AsrpruneError, match="'a' appears more than once"):
        read_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(AsrpruneError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
