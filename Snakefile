# asrprune: structured pruning of Conformer-Transducer speech recognisers.
#   snakemake --cores all                               # embedded default (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml  # minutes, what CI runs
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# Beside this Snakefile, not in the working directory: with --directory elsewhere (as the
# tests run it) a relative path would be silently skipped whenever --configfile is given.
configfile: str(Path(workflow.basedir) / "config/config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/speed.smk"
include: "workflow/rules/deploy.smk"
include: "workflow/rules/results.smk"


rule all:
    default_target: True
    input:
        all_targets(),
