# Config validation, paths and helpers shared by every rule file.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from asrprune.config import load_schema, validate_config
from asrprune.data.manifest import SPLITS
from asrprune.errors import AsrpruneError

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
# One environment for every rule: the venv of scripts/setup.sh, or this conda env with
# --use-conda (its post-deploy script installs the package from the repository).
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    split="|".join(SPLITS),
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


def section_json(*keys):
    """One config section as JSON, the way a command receives its settings."""
    value = config
    for key in keys:
        value = value[key]
    return json.dumps(value, sort_keys=True)


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


def pruned_models():
    """Names of every pruned model of this run: <method>-s<sparsity>, e.g. l0-params-s0.5."""
    prune = config["prune"]
    return [f"{m}-s{s:g}" for m in prune["methods"] for s in prune["sparsities"]]


def all_targets():
    models = ["teacher", *pruned_models()]
    return [*data_targets(), *expand(f"{R}/metrics/{{model}}.json", model=models)]
