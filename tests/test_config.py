"""The schema validates every config file, fills defaults and names bad keys and values."""

import dataclasses

import pytest
import yaml

from asrprune.config import load_config, load_schema, settings_from_dict, validate_config
from asrprune.data.checks import CheckSettings
from asrprune.data.corpus import EmbeddedCorpusSettings
from asrprune.errors import AsrpruneError
from asrprune.lm import LmSettings
from asrprune.model.structure import ModelConfig
from asrprune.pruning.l0 import L0Settings
from asrprune.pruning.magnitude import ParpSettings
from asrprune.train import TrainSettings
from tests.builders import REPO

CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def test_every_config_file_is_valid():
    assert {p.name for p in CONFIGS} >= {"config.yaml", "smoke.yaml", "librispeech.yaml"}
    for path in CONFIGS:
        # each file is merged over the default, as `snakemake --configfile` does
        paths = [REPO / "config/config.yaml"] + ([] if path.name == "config.yaml" else [path])
        config = load_config(*paths)
        assert config["run"] == {"config.yaml": "embedded"}.get(path.name, path.stem)


def test_defaults_are_filled():
    config = validate_config({"run": "x"})
    assert config["data"]["checks"]["sample_rate"] == 16000
    assert config["data"]["embedded"]["utterances"]["train"] > 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"run": "x", "dta": {}}, "<top level>: unknown key 'dta'"),
        (
            {"run": "x", "data": {"checks": {"min_second": 1}}},
            "data.checks: unknown key 'min_second'",
        ),
        ({"run": "x", "data": {"source": "timit"}}, "data.source: 'timit' is not one of"),
        ({"run": "x", "data": {"checks": {"max_seconds": -1}}}, "data.checks.max_seconds"),
        ({"run": "bad name"}, "run: 'bad name' does not match"),
        ({}, "'run' is a required property"),
        (
            {"run": "x", "model": {"num_blocks": 2}, "teacher": {"inter_ctc_block": 3}},
            "teacher.inter_ctc_block: 3 is beyond model.num_blocks (2)",
        ),
        (
            {"run": "x", "evaluate": {"beam": 0, "lm": {"order": 4}}},
            "evaluate.lm.order: 4 needs beam search, but evaluate.beam is 0",
        ),
        ({"run": "x", "evaluate": {"lm": {"discount": 1.0}}}, "evaluate.lm.discount"),
    ],
)
def test_bad_config_is_refused_naming_the_key(config, message):
    with pytest.raises(AsrpruneError, match="invalid config") as err:
        validate_config(config)
    assert message in str(err.value)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, value):
    # the schema's ranges let YAML's .nan through: a NaN learning rate would train on garbage
    path = tmp_path / "nan.yaml"
    path.write_text(f"teacher:\n  peak_lr: {value}\nprune:\n  sparsities: [0.5, {value}]\n")
    with pytest.raises(AsrpruneError, match=f"invalid .*{path.name}") as err:
        load_config(REPO / "config/config.yaml", path)
    assert "teacher.peak_lr: " in str(err.value) and "prune.sparsities[1]: " in str(err.value)
    assert "is not a finite number" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "config file {path} is empty"),
        ("# only a comment\n", "config file {path} is empty"),
        ("run: x\nmodel:\n  d_model: [1,\n  foo: 2\n", "{path}: not valid YAML: line 5, column 1"),
        ("run: x\nteacher:\n  seed: 1\n   x: 2\n", "{path}: not valid YAML: line 4, column 5"),
        ("- run\n", "{path}: expected a mapping of settings at the top level, got list"),
    ],
)
def test_empty_or_malformed_config_file_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AsrpruneError) as err:
        load_config(REPO / "config/config.yaml", path)
    assert message.format(path=path) in str(err.value)
    with pytest.raises(AsrpruneError, match="is a directory, not a config file"):
        load_config(tmp_path)


def _schema_section(*keys):
    schema = load_schema()
    node = schema
    for key in keys:
        node = node["properties"][key]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


@pytest.mark.parametrize(
    ("cls", "keys"),
    [
        (CheckSettings, ("data", "checks")),
        (EmbeddedCorpusSettings, ("data", "embedded")),
        (ModelConfig, ("model",)),
        (TrainSettings, ("teacher",)),
        (TrainSettings, ("prune", "train")),
        (TrainSettings, ("prune", "finetune")),
        (L0Settings, ("prune", "l0")),
        (ParpSettings, ("prune", "parp")),
        (LmSettings, ("evaluate", "lm")),
    ],
)
def test_settings_dataclasses_match_the_schema(cls, keys):
    """Schema and dataclass are two views of one section; they must not drift apart."""
    section = _schema_section(*keys)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(section["properties"]) == set(fields)
    defaults = validate_config({"run": "x"})
    for key in keys:
        defaults = defaults[key]
    # the schema's defaults build the dataclass, and agree with its own defaults
    defaults = {k: v for k, v in defaults.items() if v is not None or k != "vocab_size"}
    settings_from_dict(cls, defaults, ".".join(keys))
    for name, field in fields.items():
        # the schema leaves vocab_size to the tokenizer; the dataclass needs a number
        if field.default is not dataclasses.MISSING and (cls, name) != (ModelConfig, "vocab_size"):
            assert _plain(defaults[name]) == _plain(field.default), name


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_schema_offers_exactly_the_methods_a_job_runs():
    from asrprune.pruning.job import PRUNE_METHODS

    methods = _schema_section("prune")["properties"]["methods"]["items"]["enum"]
    assert methods == list(PRUNE_METHODS)


def test_settings_refuse_unknown_keys():
    with pytest.raises(AsrpruneError, match="data.checks: unknown key 'rate'"):
        settings_from_dict(CheckSettings, {"rate": 8000}, "data.checks")
    with pytest.raises(AsrpruneError, match="not valid JSON"):
        settings_from_dict(CheckSettings, "{", "data.checks")


def test_config_files_comment_every_key():
    """Every setting in the default config has a comment on its line or the line above."""
    lines = (REPO / "config/config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")) or stripped.endswith(":"):
            continue  # comments, list items and section headers
        # a comment on the line, or above it (one comment may cover a group of keys)
        j = i - 1
        while (
            j >= 0
            and lines[j].strip()
            and not lines[j].strip().startswith("#")
            and not lines[j].strip().endswith(":")
        ):
            j -= 1
        above = lines[j].strip() if j >= 0 else ""
        assert "#" in line or above.startswith("#"), f"config.yaml:{i + 1}: {line!r}"
    yaml.safe_load("\n".join(lines))


def test_overrides_merge_after_the_files_and_are_validated():
    base = REPO / "config" / "config.yaml"
    config = load_config(base, overrides=[{"prune": {"l0": {"distill_weight": 10}}}])
    assert config["prune"]["l0"]["distill_weight"] == 10
    assert config["prune"]["l0"]["distill_map"] == load_config(base)["prune"]["l0"]["distill_map"]
    with pytest.raises(AsrpruneError, match="overrides"):
        load_config(base, overrides=[{"prune": {"l0": {"distill_weight": "ten"}}}])
