"""Which tables and figures a run has, from its methods and sparsities alone.

Pure Python with no heavy imports: the workflow asks these at load time to name the
outputs of its rules, and the commands ask them again to decide what to write, so the
files a rule promises are exactly the files its command writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from asrprune.errors import AsrpruneError

TEACHER = "teacher"
TABLE1_METHODS = ("l0-params", "l0-flops", "omp", "parp", "svd")
REFERENCE = "l0-params"  # Table 2 compares the ablations with it
ABLATIONS = ("l0-nohidden", "l0-coarse", "l0-nokd")
# Ours and its ablations: the jobs that learn gates towards a target (their history has
# expected_kept and target_kept). Equal to pruning.l0.METHODS; a test holds them equal.
L0_METHODS = ("l0-params", "l0-flops", *ABLATIONS)
# Our method with either budget: what Fig. 2a and 2b show, and what is not tested
# against l0-params for significance.
OURS = ("l0-params", "l0-flops")
# Fig. 2a's target, as in the paper; a run without it shows its largest target instead.
STRUCTURE_SPARSITY = 0.5


def model_name(method: str, sparsity: float) -> str:
    """The workflow's model name, as common.smk spells it: ``l0-params-s0.5``."""
    return f"{method}-s{sparsity:g}"


def full_decoding(model: str, full_sparsities: Sequence[float] | None) -> bool:
    """Whether rule evaluate decodes ``model`` the full way (config evaluate.beam and .lm)
    besides greedy search: the teacher always, a pruned model ``<method>-s<sparsity>`` when
    its sparsity is in ``full_sparsities`` (None: every model)."""
    if model == TEACHER or full_sparsities is None:
        return True
    method, sep, sparsity = model.rpartition("-s")
    try:
        value = float(sparsity)
    except ValueError:
        value = None
    if not sep or not method or value is None:
        raise AsrpruneError(f"model {model!r} is neither {TEACHER!r} nor <method>-s<sparsity>")
    return any(abs(value - s) < 1e-9 for s in full_sparsities)


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


def check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in (*TABLE1_METHODS, *ABLATIONS)]
    if unknown:
        raise AsrpruneError(
            f"methods: unknown {', '.join(map(repr, unknown))}; expected some of "
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
        name: [m for m in shown if m not in OURS]
        for name, shown in table_methods(methods).items()
    }
    return {name: others for name, others in tested.items() if others}


def table_stems(methods: Sequence[str]) -> list[str]:
    """File stems of the run's tables (each written as .csv and .md): ``table1``, then
    ``table1_significance`` when it has one, then the same for ``table2``."""
    tested = significance_tables(methods)
    stems = []
    for name in table_methods(methods):
        stems += [name, f"{name}_significance"] if name in tested else [name]
    return stems


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
