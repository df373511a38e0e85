# Config validation, paths and helpers shared by every rule file.
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from asrprune.config import load_schema, validate_config
from asrprune.data.manifest import ALL_SPLITS, data_splits
from asrprune.errors import AsrpruneError
from asrprune.pruning.settings import (
    LATENCY_METHODS,
    SPEED_RULE_PROFILE,
    latency_table_path,
    method_settings,
    replicate_settings,
)
from asrprune.results.layout import (
    L0_METHODS,
    Replicates,
    deploy_models as _deploy_models,
    figure_kinds,
    full_decoding,
    model_name,
    parse_model_name,
    pruned_models as _pruned_models,
    table_stems,
)

try:
    validate_config(
        config,
        load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"),
    )
except AsrpruneError as e:
    raise WorkflowError(str(e)) from None

RUN = config["run"]
R = f"results/{RUN}"  # every output of this run lives under here
DATA_THREADS = config["resources"]["data_threads"]
SOURCE = config["data"]["source"]
# The data stage's splits: LibriSpeech's four, and test-newtext when a text domain is
# held out of the embedded corpus.
SPLITS = data_splits(config["data"])
LM_TEXT = config["evaluate"]["lm_text"]
if LM_TEXT == "pool" and SOURCE != "embedded":
    raise WorkflowError(
        f"evaluate.lm_text: pool is the embedded corpus's text; data.source is {SOURCE!r}"
        " (use transcripts)"
    )
if not set(config["evaluate"]["pruned_splits"]) <= set(SPLITS):
    raise WorkflowError(
        f"evaluate.pruned_splits {config['evaluate']['pruned_splits']}: this run's data "
        f"has only {list(SPLITS)} (test-newtext needs data.embedded.newtext_domain)"
    )
# One environment for every rule: the venv of scripts/setup.sh, or this conda env with
# --use-conda (its post-deploy script installs the package from the repository).
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    split="|".join(ALL_SPLITS),
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


LATENCY = config["prune"]["latency"]
# l0-latency's budget: the latency table of the profiled machine (rule latency_table)
LATENCY_TABLE = latency_table_path(R, LATENCY["profile"])
# timed at the widths l0-latency's final masks can keep (its prune.l0 width_multiple
# and hidden_multiple)
LATENCY_MULTIPLES = {
    k: method_settings("l0-latency", config["prune"])["l0"].get(k)
    for k in ("width_multiple", "hidden_multiple")
}


def latency_input(wildcards):
    """The latency table, for a job whose method prunes to a latency budget."""
    method = parse_model_name(wildcards.model)[0]
    return {"latency": LATENCY_TABLE} if method in LATENCY_METHODS else {}


def section_json(*keys):
    """One config section as JSON, the way a command receives its settings."""
    value = config
    for key in keys:
        value = value[key]
    return json.dumps(value, sort_keys=True)


def evaluate_splits(model):
    """The splits ``model`` is decoded on: every evaluation split for the teacher, else
    evaluate.pruned_splits."""
    if model == "teacher":
        return " ".join(SPLITS[1:])
    return " ".join(config["evaluate"]["pruned_splits"])


def full_decoding_of(model):
    """Whether ``model`` gets the full decoding (beam and LM): the teacher and the pruned
    models at evaluate.full_sparsities."""
    return full_decoding(model, config["evaluate"]["full_sparsities"])


def decoding_args(model, lm_text):
    """How ``model`` is evaluated besides greedy search: the full decoding with the
    n-gram counted on ``lm_text`` (``full_decoding_of``), else none; so a change of beam
    or LM reruns only the evaluations that use them."""
    if not full_decoding_of(model):
        return "--no-full"
    lm = shlex.quote(section_json("evaluate", "lm"))
    return f"--full --beam {config['evaluate']['beam']} --lm {lm} --lm-text {lm_text}"


def prune_settings_json(method, seed=0):
    """What ``method``'s pruning job (replicate ``seed``) reads of config prune, as JSON:
    only that, so that a changed setting reruns only the jobs that read it
    (asrprune.pruning.settings)."""
    settings = replicate_settings(method_settings(method, config["prune"]), seed)
    return json.dumps(settings, sort_keys=True)


def rule_resources(rule):
    """What ``rule``'s jobs ask the scheduler for: config ``cluster.default`` updated by
    ``cluster.rules.<rule>``, unset keys left out; a rule spreads it into ``resources``.
    """
    cluster = config["cluster"]
    merged = {**cluster["default"], **cluster["rules"].get(rule, {})}
    return {k: v for k, v in merged.items() if v is not None}


def under_torchrun(rule, cmd):
    """The shell command ``cmd`` ("asrprune ..."), started by torchrun with one process per
    GPU when ``rule``'s jobs have more than one GPU; else ``cmd`` itself, so a run without
    GPUs keeps its command (Snakemake reruns the jobs whose command changed)."""
    gpus = rule_resources(rule)["gpu"]
    if gpus <= 1:
        return cmd
    return f"torchrun --standalone --nproc_per_node={gpus} -m {cmd}"


def all_cores():
    """Every core Snakemake may use (--cores); 1 where it was given none (--report, -n)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def log_path(stage, name):
    return f"{R}/logs/{stage}/{name}.log"


def bench_path(stage, name):
    return f"{R}/benchmarks/{stage}/{name}.tsv"


def check_data_source():
    """Fail before any job runs when the corpus cannot be built or found."""
    from asrprune.data.librispeech import check_root
    from asrprune.data.voices import check_engines

    if Path(f"{R}/corpus/train.jsonl").exists():
        return  # already built; nothing more is needed from outside
    try:
        if SOURCE == "embedded":
            check_engines()
        else:
            lib = config["data"]["librispeech"]
            check_root(
                lib["root"], sorted({s for v in lib["subsets"].values() for s in v})
            )
    except AsrpruneError as e:
        raise WorkflowError(str(e)) from None


def data_targets():
    return [
        f"{R}/data/report.json",
        f"{R}/data/bpe.model",
        f"{R}/data/cmvn.json",
        *expand(f"{R}/data/features/{{split}}/index.json", split=SPLITS),
    ]


def data_inputs():
    """What every training and evaluation job reads from the data stage."""
    return [
        f"{R}/data/bpe.model",
        f"{R}/data/cmvn.json",
        *expand(f"{R}/data/manifests/{{split}}.jsonl", split=SPLITS),
        *expand(f"{R}/data/features/{{split}}/index.json", split=SPLITS),
    ]


REPLICATES = Replicates(
    config["prune"]["seeds"],
    config["prune"]["seed_sparsities"],
    config["prune"]["seed_methods"],
)


def full_sparsities_args():
    """Rule tables' --full-sparsities: the sparsities whose models have the full decoding
    (evaluate.full_sparsities, null: all), none when evaluate.beam gives it to none."""
    evaluate = config["evaluate"]
    where = evaluate["full_sparsities"]
    where = config["prune"]["sparsities"] if where is None else where
    if evaluate["beam"] <= 1 or not where:
        return ""
    return "--full-sparsities " + " ".join(map(str, where))


def replicates_args():
    """Rule tables' replicate flags: none for one seed, so its command is as before."""
    if REPLICATES.seeds == 1:
        return ""
    where = REPLICATES.sparsities
    sparsities = (
        "" if where is None else " --seed-sparsities " + " ".join(map(str, where))
    )
    methods = REPLICATES.methods
    methods = "" if methods is None else " --seed-methods " + " ".join(methods)
    return f"--seeds {REPLICATES.seeds}{sparsities}{methods}"


def pruned_models(methods=None):
    """Names of every pruned model of this run (of ``methods`` only, if given):
    <method>-s<sparsity>, e.g. l0-params-s0.5, and -seed<n> for replicates n > 0."""
    prune = config["prune"]
    chosen = [m for m in prune["methods"] if methods is None or m in methods]
    try:
        return _pruned_models(chosen, prune["sparsities"], REPLICATES)
    except AsrpruneError as e:
        raise WorkflowError(str(e)) from None


# The paper's tables and the figures (results.smk). Which exist follows the methods run,
# decided by the functions the commands use, so the outputs promised are those written.
# TABLES: table1, and table2 with ablations, each followed by its _significance file when
# l0-params ran with a rival there. FIGURES: file stem -> kind (its caption).
# Pruned models decoded on test-newtext: the in- against out-of-domain table too.
DOMAIN_SHIFT = "test-newtext" in config["evaluate"]["pruned_splits"]
TABLES = table_stems(config["prune"]["methods"], DOMAIN_SHIFT)
FIGURES = figure_kinds(config["prune"]["methods"])


def table_files():
    return [f"{R}/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md")]


def figure_files():
    return [f"{R}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]


DEPLOY = config["deploy"]


def deploy_models():
    """The teacher and the pruned models config deploy exports ([] when it is off)."""
    if not DEPLOY["enabled"]:
        return []
    prune = config["prune"]
    try:
        return _deploy_models(
            prune["methods"],
            prune["sparsities"],
            DEPLOY["sparsities"],
            DEPLOY["methods"],
        )
    except AsrpruneError as e:
        raise WorkflowError(str(e)) from None


def deploy_timing_json():
    """What rule speed_deploy reads of config deploy, as JSON."""
    keys = ("threads", "utterances", "warmup_rounds", "rounds")
    return json.dumps({k: DEPLOY[k] for k in keys}, sort_keys=True)


def deploy_table_files():
    """The deployment tables, Markdown first per table ([] when deploy is off)."""
    if not DEPLOY["enabled"]:
        return []
    return [
        f"{R}/tables/{t}.{ext}"
        for t in ("deploy", "speed_deploy")
        for ext in ("md", "csv")
    ]


def latency_speed():
    """The speed file that times the latency profile: speed.csv for the speed rule's (cpu,
    torch, 1 thread), else speed_deploy.csv (config deploy must be on and time it)."""
    profile = LATENCY["profile"]
    latency_run = any(m in LATENCY_METHODS for m in config["prune"]["methods"])
    if not latency_run or profile == SPEED_RULE_PROFILE:
        return f"{R}/speed.csv"
    if not DEPLOY["enabled"]:
        raise WorkflowError(
            f"prune.latency.profile {profile}: only the deploy stage times it; set "
            "deploy.enabled (with the profile's threads in deploy.threads) to check l0-latency"
        )
    return f"{R}/speed_deploy.csv"


def latency_table_files():
    """The latency model's check, Markdown first, and the matched-time comparisons ([]
    without a latency-target method)."""
    if not any(m in LATENCY_METHODS for m in config["prune"]["methods"]):
        return []
    return [f"{R}/tables/latency.{ext}" for ext in ("md", "csv")] + [
        f"{R}/tables/latency_matched.csv"
    ]


def run_targets():
    """Every result of the run but RESULTS.md, which is written from them last."""
    models = ["teacher", *pruned_models()]
    return [
        *data_targets(),
        *expand(f"{R}/metrics/{{model}}.json", model=models),
        f"{R}/speed.csv",
        *table_files(),
        *figure_files(),
        *deploy_table_files(),
        *latency_table_files(),
    ]


def all_targets():
    return [*run_targets(), f"{R}/RESULTS.md"]
