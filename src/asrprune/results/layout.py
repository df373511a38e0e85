"""Which tables and figures a run has, from its methods and sparsities alone.

Pure Python with no heavy imports: the workflow asks these at load time to name the
outputs of its rules, and the commands ask them again to decide what to write, so the
files a rule promises are exactly the files its command writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from asrprune.errors import AsrpruneError

TEACHER = "teacher"
TABLE1_METHODS = ("l0-params", "l0-flops", "l0-latency", "omp", "parp", "svd")
REFERENCE = "l0-params"  # Table 2 compares the ablations with it
ABLATIONS = ("l0-nohidden", "l0-coarse", "l0-nokd")
# Ours and its ablations: the jobs that learn gates towards a target (their history has
# expected_kept and target_kept). Equal to pruning.l0.METHODS; a test holds them equal.
L0_METHODS = ("l0-params", "l0-flops", "l0-latency", *ABLATIONS)
# Our method with either budget: what Fig. 2a and 2b show, and what is not tested
# against l0-params for significance.
OURS = ("l0-params", "l0-flops", "l0-latency")
# Fig. 2a's target, as in the paper; a run without it shows its largest target instead.
STRUCTURE_SPARSITY = 0.5


def model_name(method: str, sparsity: float, seed: int = 0) -> str:
    """The workflow's model name, as common.smk spells it: ``l0-params-s0.5``, and for
    the job's replicate ``seed`` > 0 (config prune.seeds) ``l0-params-s0.5-seed1``."""
    return f"{method}-s{sparsity:g}" + (f"-seed{seed}" if seed else "")


_PRUNED = re.compile(r"(?P<method>.+)-s(?P<sparsity>0\.\d+|0|1)(?:-seed(?P<seed>[1-9]\d*))?")


def parse_model_name(model: str) -> tuple[str, float, int]:
    """(method, sparsity, seed) of a pruned model's name (:func:`model_name`'s inverse)."""
    m = _PRUNED.fullmatch(model)
    if m is None:
        raise AsrpruneError(
            f"model {model!r} is neither {TEACHER!r} nor <method>-s<sparsity>[-seed<n>]"
        )
    return m["method"], float(m["sparsity"]), int(m["seed"] or 0)


def among(value: float, values: Sequence[float]) -> bool:
    """Whether ``value`` is one of ``values``, as sparsities read from text compare."""
    return any(abs(value - v) < 1e-9 for v in values)


@dataclass(frozen=True)
class Replicates:
    """Config prune.seeds, prune.seed_sparsities and prune.seed_methods: the job of each
    of ``methods`` (None: every method) at each of ``sparsities`` (None: every one) runs
    ``seeds`` times, as seeds 0 .. seeds-1; every other job once."""

    seeds: int = 1
    sparsities: tuple[float, ...] | None = None
    methods: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.seeds < 1:
            raise AsrpruneError(f"prune.seeds: expected 1 or more, got {self.seeds}")
        # config and argparse give lists: held as tuples, so the value stays hashable
        for name in ("sparsities", "methods"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def count(self, method: str, sparsity: float) -> int:
        replicated = (self.sparsities is None or among(sparsity, self.sparsities)) and (
            self.methods is None or method in self.methods
        )
        return self.seeds if replicated else 1

    def names(self, method: str, sparsity: float) -> list[str]:
        """The models of ``method`` at ``sparsity``, seed 0 (the unsuffixed name) first."""
        return [model_name(method, sparsity, k) for k in range(self.count(method, sparsity))]


ONE_SEED = Replicates()  # one job per method and sparsity, the default


def pruned_models(
    methods: Sequence[str], sparsities: Sequence[float], replicates: Replicates = ONE_SEED
) -> list[str]:
    """Every pruned model of a run: each method at each sparsity, with its replicates."""
    stray = [s for s in replicates.sparsities or () if not among(s, sparsities)]
    if stray:
        raise AsrpruneError(
            f"prune.seed_sparsities: {stray[0]:g} is not among prune.sparsities "
            f"({', '.join(f'{t:g}' for t in sparsities)})"
        )
    check_methods(replicates.methods or (), "prune.seed_methods")
    return [name for m in methods for s in sparsities for name in replicates.names(m, s)]


def full_decoding(model: str, full_sparsities: Sequence[float] | None) -> bool:
    """Whether rule evaluate decodes ``model`` the full way (config evaluate.beam and .lm)
    besides greedy search: the teacher always, a pruned model (any replicate) when its
    sparsity is in ``full_sparsities`` (None: every model)."""
    if model == TEACHER or full_sparsities is None:
        return True
    return among(parse_model_name(model)[1], full_sparsities)


def deploy_models(
    methods: Sequence[str],
    sparsities: Sequence[float],
    deploy_sparsities: Sequence[float],
    deploy_methods: Sequence[str] | None = None,
) -> list[str]:
    """The models config ``deploy`` exports: the teacher, then each of ``deploy_methods``
    (None: every method of the run) at each of ``deploy_sparsities``; both must be among
    the run's ``methods`` and target ``sparsities``."""
    missing = [s for s in deploy_sparsities if not any(abs(s - t) < 1e-9 for t in sparsities)]
    if missing:
        raise AsrpruneError(
            f"deploy.sparsities: {missing[0]:g} is not among prune.sparsities "
            f"({', '.join(f'{t:g}' for t in sparsities)})"
        )
    chosen = methods if deploy_methods is None else deploy_methods
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        raise AsrpruneError(
            f"deploy.methods: {unknown[0]!r} is not among prune.methods ({', '.join(methods)})"
        )
    return [TEACHER, *(model_name(m, s) for s in deploy_sparsities for m in chosen)]


def check_methods(methods: Sequence[str], key: str = "methods") -> None:
    unknown = [m for m in methods if m not in (*TABLE1_METHODS, *ABLATIONS)]
    if unknown:
        raise AsrpruneError(
            f"{key}: unknown {', '.join(map(repr, unknown))}; expected some of "
            f"{', '.join((*TABLE1_METHODS, *ABLATIONS))}"
        )


def table_methods(methods: Sequence[str]) -> dict[str, list[str]]:
    """The methods each table shows, in the order given; ``table2`` only with ablations.

    Table 1: ours and the baselines. Table 2: ``l0-params`` (when run) as the reference,
    then the ablations.
    """
    check_methods(methods)
    tables = {"table1": [m for m in methods if m in TABLE1_METHODS]}
    ablations = [m for m in methods if m in ABLATIONS]
    if ablations:
        tables["table2"] = [m for m in methods if m == REFERENCE] + ablations
    return tables


def significance_tables(methods: Sequence[str]) -> dict[str, list[str]]:
    """Table name -> the methods ``l0-params`` is tested against, per sparsity, in it.

    Table 1's baselines and Table 2's ablations, when ``l0-params`` and one of them ran;
    ``l0-flops`` is ours with another budget, not a rival, so it is not tested.
    """
    if REFERENCE not in methods:
        return {}
    tested = {
        name: [m for m in shown if m not in OURS] for name, shown in table_methods(methods).items()
    }
    return {name: others for name, others in tested.items() if others}


DOMAIN_SHIFT = "domain_shift"


def table_stems(methods: Sequence[str], domain_shift: bool = False) -> list[str]:
    """File stems of the run's tables (each written as .csv and .md): ``table1``, then
    ``table1_significance`` when it has one, then the same for ``table2``; then
    ``domain_shift`` (in- against out-of-domain loss) when ``domain_shift``, i.e. when the
    pruned models are decoded on test-newtext."""
    tested = significance_tables(methods)
    stems = []
    for name in table_methods(methods):
        stems += [name, f"{name}_significance"] if name in tested else [name]
    return stems + ([DOMAIN_SHIFT] if domain_shift else [])


def structure_sparsity(sparsities: Sequence[float]) -> float:
    """The target Fig. 2a shows: 0.5 as in the paper, else the run's largest."""
    if not sparsities:
        raise AsrpruneError("sparsities: expected at least one target sparsity")
    return STRUCTURE_SPARSITY if STRUCTURE_SPARSITY in sparsities else max(sparsities)


def figure_kinds(methods: Sequence[str]) -> dict[str, str]:
    """File stem -> kind of the run's figures (each written as .png and .pdf).

    ``fig2a_modules_<m>`` and ``fig2b_hidden_<m>`` for l0-params and l0-flops when run,
    ``wer_rtf`` always, ``kept_vs_target`` when any of our L0 jobs ran. The kind names the
    figure's caption (workflow/report/<kind>.rst).
    """
    check_methods(methods)
    kinds = {}
    for method in (m for m in methods if m in OURS):
        kinds[f"fig2a_modules_{method}"] = "fig2a_modules"
        kinds[f"fig2b_hidden_{method}"] = "fig2b_hidden"
    kinds["wer_rtf"] = "wer_rtf"
    if any(m in L0_METHODS for m in methods):
        kinds["kept_vs_target"] = "kept_vs_target"
    return kinds


def figure_names(methods: Sequence[str]) -> list[str]:
    """File stems of the run's figures, in ``figure_kinds`` order."""
    return list(figure_kinds(methods))
