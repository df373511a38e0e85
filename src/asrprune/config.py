"""The workflow configuration: one JSON schema validates it and fills its defaults.

The schema (``workflow/schemas/config.schema.yaml``) is the single source of truth for
keys, types and defaults. The Snakefile validates the merged config once at load; jobs
then receive only their own section (as JSON) and turn it into a typed settings
dataclass with :func:`settings_from_dict`, which refuses keys the dataclass lacks.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from asrprune.errors import AsrpruneError
from asrprune.io import require_file

T = TypeVar("T")

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _with_defaults(validator_class):
    """Extend a validator so that validating also fills in schema defaults, in place."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    return f"{where}: {error.message}"


def _non_finite(value: Any, where: str = "") -> list[str]:
    """Every NaN or infinite number in ``value``, by key path: YAML's ``.nan`` and ``.inf``
    are numbers to a JSON schema, so its ranges let them through."""
    if isinstance(value, dict):
        keys = {k: f"{where}.{k}" if where else str(k) for k in value}
        return [p for k, v in value.items() for p in _non_finite(v, keys[k])]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where or '<top level>'}: {value} is not a finite number"]
    return []


def validate_config(config: dict, schema: dict | None = None, source: str = "config") -> dict:
    """Validate ``config`` in place, filling defaults; raise naming every bad key or value."""
    schema = load_schema() if schema is None else schema
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(e) for e in errors] + _non_finite(config)
    problems = problems or _cross_field_problems(config)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise AsrpruneError(f"invalid {source}:\n{lines}")
    return config


def _cross_field_problems(config: dict) -> list[str]:
    """Rules between keys that a JSON schema cannot state (checked on a valid config)."""
    blocks = config["model"]["num_blocks"]
    sections = {
        "teacher": config["teacher"],
        "prune.train": config["prune"]["train"],
        "prune.finetune": config["prune"]["finetune"],
    }
    problems = [
        f"{where}.inter_ctc_block: {s['inter_ctc_block']} is beyond model.num_blocks ({blocks})"
        for where, s in sections.items()
        if s["inter_ctc_block"] > blocks
    ]
    evaluate = config["evaluate"]
    if evaluate["lm"]["order"] and evaluate["beam"] <= 1:
        problems.append(
            f"evaluate.lm.order: {evaluate['lm']['order']} needs beam search, but "
            f"evaluate.beam is {evaluate['beam']} (greedy)"
        )
    return problems


def load_config(*paths: str | Path, overrides: Sequence[dict] = ()) -> dict:
    """Merge YAML files (later ones override earlier ones, recursively), then each of
    ``overrides`` (nested mappings, e.g. from a command line), and validate."""
    merged: dict = {}
    for path in paths:
        merge_into(merged, read_config_file(path))
    for override in overrides:
        merge_into(merged, override)
    source = " + ".join([*(str(p) for p in paths), *(["overrides"] if overrides else [])])
    return validate_config(merged, source=source)


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error in one line: where it was noticed, and where its construct began
    (an unclosed bracket is noticed lines after it was opened)."""

    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    text = f"{at(e.problem_mark)}: {e.problem}" if e.problem_mark else str(e.problem)
    if e.context and e.context_mark:
        text += f" ({e.context}, from {at(e.context_mark)})"
    return text


def read_config_file(path: str | Path) -> dict:
    """The mapping a YAML config file holds; a missing, empty or malformed file is an error
    naming it (and the line of a syntax error)."""
    path = require_file(path, "config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        raise AsrpruneError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise AsrpruneError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        raise AsrpruneError(f"config file {path} is empty (expected a mapping of settings)")
    if not isinstance(data, dict):
        raise AsrpruneError(
            f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    return data


def merge_into(base: dict, override: dict) -> dict:
    """Recursively update ``base`` with ``override``, as Snakemake merges config files."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def check_keys(cls: type, values: Any, where: str) -> dict:
    """Refuse a non-mapping, or keys that the dataclass ``cls`` lacks, naming ``where``."""
    if not isinstance(values, dict):
        raise AsrpruneError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise AsrpruneError(f"{where}: unknown key {names} (allowed: {', '.join(sorted(fields))})")
    return values


def section_dict(values: Any, where: str) -> dict:
    """A config section given as a mapping or as its JSON (how commands receive it)."""
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except json.JSONDecodeError as e:
            raise AsrpruneError(f"{where}: settings are not valid JSON ({e.msg})") from None
    if not isinstance(values, dict):
        raise AsrpruneError(f"{where}: expected a mapping, got {type(values).__name__}")
    return values


def settings_from_dict(cls: type[T], values: dict[str, Any] | str, where: str) -> T:
    """Build the settings dataclass ``cls`` from a dict (or its JSON); unknown keys refused.

    ``where`` names the config section in error messages (e.g. ``data.checks``).
    """
    values = section_dict(values, where)
    check_keys(cls, values, where)
    # JSON has no tuples: a list given for a tuple-typed field becomes one.
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values = {
        k: tuple(v) if isinstance(v, list) and types[k].startswith("tuple") else v
        for k, v in values.items()
    }
    try:
        return cls(**values)
    except TypeError as e:
        raise AsrpruneError(f"{where}: {e}") from None
