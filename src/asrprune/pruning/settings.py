"""Which settings of config ``prune`` each pruning method reads: one table, both sides.

The workflow gives each pruning job only its method's part of the config
(:func:`method_settings`), so Snakemake, which reruns a job when its params change,
reruns exactly the jobs that read a changed setting. The job refuses anything else
(:func:`check_method_settings`), so it cannot read a setting it was not given.

No torch here: the workflow calls it at load time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asrprune.config import section_dict
from asrprune.errors import AsrpruneError


@dataclass(frozen=True)
class Keys:
    """The keys of one section a method reads: ``only`` these, or every key ``but``
    these. Keys of a section it reads all of may be left out: they take their defaults."""

    only: tuple[str, ...] | None = None
    but: tuple[str, ...] = ()

    def reads(self, key: str) -> bool:
        return key in self.only if self.only is not None else key not in self.but

    def select(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``section`` that is read."""
        return {k: v for k, v in section.items() if self.reads(k)}

    def describe(self, section: str) -> str:
        if self.only is not None:
            return ", ".join(f"prune.{section}.{k}" for k in self.only)
        return f"prune.{section}" + (f" but {', '.join(self.but)}" if self.but else "")


ALL = Keys()
# Every job reports its compact model's FLOPs for an utterance of this length.
_FLOPS_REFERENCE = Keys(only=("reference_seconds",))
_L0 = {"l0": ALL, "train": ALL, "finetune": ALL}
# One shot, no training while pruning: prune.train.max_steps + prune.finetune.max_steps
# steps of fine-tuning with prune.finetune's settings, as long as the others train.
_ONE_SHOT = {"l0": _FLOPS_REFERENCE, "train": Keys(only=("max_steps",)), "finetune": ALL}
# Method -> section name -> the keys it reads, for every method a job can run: ours and
# its ablations (pruning.l0.METHODS), then the baselines.
READS: dict[str, dict[str, Keys]] = {
    "l0-params": _L0,
    "l0-flops": _L0,
    # its latency table is a file the job reads (the latency_table rule's), not settings
    "l0-latency": _L0,
    "l0-nohidden": _L0,
    "l0-coarse": _L0,
    # no distillation: neither its weight nor the side of its maps is read
    "l0-nokd": {**_L0, "l0": Keys(but=("distill_weight", "distill_map"))},
    "omp": {**_ONE_SHOT, "omp": ALL},
    # trains while it prunes (prune.train), re-pruning every prune.parp.reprune_every steps;
    # starts from the OMP mask and ranks as OMP does (prune.omp)
    "parp": {"l0": _FLOPS_REFERENCE, "omp": ALL, "parp": ALL, "train": ALL, "finetune": ALL},
    "svd": _ONE_SHOT,
}


# Where l0-latency's model will run: the latency table's devices and runtimes.
LATENCY_DEVICES = ("cpu", "cuda")
LATENCY_BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyProfile:
    """Where the model will run: config ``prune.latency.profile``."""

    device: str = "cpu"
    backend: str = "torch"
    threads: int = 1  # intra-op threads of the timed process

    def __post_init__(self):
        if self.device not in LATENCY_DEVICES:
            raise AsrpruneError(
                f"prune.latency.profile.device: expected one of {', '.join(LATENCY_DEVICES)}, "
                f"got {self.device!r}"
            )
        if self.backend not in LATENCY_BACKENDS:
            raise AsrpruneError(
                f"prune.latency.profile.backend: expected one of {', '.join(LATENCY_BACKENDS)}, "
                f"got {self.backend!r}"
            )
        if self.backend == "onnxruntime" and self.device != "cpu":
            raise AsrpruneError(
                "prune.latency.profile: the onnxruntime backend is timed on the cpu device only"
            )
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise AsrpruneError(
                f"prune.latency.profile.threads: expected an integer >= 1, got {self.threads!r}"
            )

    @property
    def name(self) -> str:
        """The table's file stem: ``cpu-torch-t1``."""
        return f"{self.device}-{self.backend}-t{self.threads}"


def latency_table_path(run_dir: str, profile: Mapping[str, Any]) -> str:
    """Where a run's latency table of ``profile`` (config ``prune.latency.profile``) is:
    ``<run_dir>/latency/cpu-torch-t1.json`` (rule latency_table writes it)."""
    return f"{run_dir}/latency/{LatencyProfile(**profile).name}.json"


# Methods whose job reads the latency table (asrprune latency-table) besides settings.
LATENCY_METHODS = ("l0-latency",)
# The latency profile the speed rule times (speed.csv); other profiles, speed_deploy.csv.
SPEED_RULE_PROFILE = {"device": "cpu", "backend": "torch", "threads": 1}


def settings_read(method: str) -> dict[str, Keys]:
    """Section name -> the keys ``method``'s job reads of it; an unknown method refused."""
    if method not in READS:
        raise AsrpruneError(
            f"unknown pruning method {method!r}; expected one of {', '.join(READS)}"
        )
    return READS[method]


def describe(method: str) -> str:
    """What ``method`` reads, for messages: ``prune.l0.reference_seconds, prune.parp, ...``."""
    return ", ".join(keys.describe(name) for name, keys in settings_read(method).items())


def method_settings(method: str, prune: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of config ``prune`` (validated, defaults filled in) that ``method``'s job
    reads, by section, with ``prune.overrides.<method>`` set over it: what the workflow
    gives the job. An override of a setting the method does not read is refused."""
    reads = settings_read(method)
    sections = {name: keys.select(prune[name]) for name, keys in reads.items()}
    overrides = (prune.get("overrides") or {}).get(method) or {}
    for name, values in overrides.items():
        where = f"prune.overrides.{method}.{name}"
        if name not in reads:
            raise AsrpruneError(f"{where}: not read by {method} ({describe(method)})")
        for key, value in section_dict(values, where).items():
            if not reads[name].reads(key):
                raise AsrpruneError(f"{where}.{key}: not read by {method} ({describe(method)})")
            sections[name][key] = value
    return sections


def check_method_settings(method: str, settings: Mapping[str, Any] | str) -> dict[str, dict]:
    """``settings`` (section name -> mapping, or all of it as JSON) as plain dicts, after
    refusing anything but ``method``'s part of config prune: a section or key it does not
    read, a section it reads missing, or a key it reads alone (e.g. prune.train.max_steps
    for omp) missing."""
    reads = settings_read(method)
    settings = section_dict(settings, "prune")
    problems = [f"prune.{name}: not read by {method}" for name in settings if name not in reads]
    sections = {}
    for name, keys in reads.items():
        if name not in settings:
            problems.append(f"prune.{name}: missing")
            continue
        section = section_dict(settings[name], f"prune.{name}")
        problems += [
            f"prune.{name}.{k}: not read by {method}" for k in section if not keys.reads(k)
        ]
        problems += [f"prune.{name}.{k}: missing" for k in keys.only or () if k not in section]
        sections[name] = section
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise AsrpruneError(
            f"settings of a {method} job: expected exactly what it reads ({describe(method)}):"
            f"\n{lines}"
        )
    return sections


def replicate_settings(settings: Mapping[str, Mapping[str, Any]], seed: int) -> dict:
    """:func:`method_settings`' output for the job's replicate ``seed`` (config
    prune.seeds): each seed it reads (``train.seed``, ``finetune.seed``) moved on by
    ``seed``, so replicates differ in gate initialisation, data order and augmentation.
    Replicate 0 is the settings unchanged."""
    out = {name: dict(section) for name, section in settings.items()}
    for name in ("train", "finetune"):
        if "seed" in out.get(name, {}):
            out[name]["seed"] += seed
    return out
