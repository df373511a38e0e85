# One pruning job per method (ours, its ablations, the baselines), target sparsity and
# replicate (config prune.seeds), each from the teacher. Model names: <method>-s<sparsity>,
# and -seed<n> for replicates n > 0 (asrprune.results.layout.model_name).


rule prune:
    input:
        data_inputs(),
        teacher=f"{R}/models/teacher.pt",
        mlflow=MLFLOW_IDS,
    output:
        model=f"{R}/models/{{model}}.pt",
        summary=f"{R}/pruning/{{model}}.json",
    log:
        log_path("prune", "{model}"),
    benchmark:
        bench_path("prune", "{model}")
    wildcard_constraints:
        model=r"[a-z0-9-]+-s0\.[0-9]+(-seed[1-9][0-9]*)?",
    conda:
        CONDA_ENV
    threads: config["resources"]["prune_threads"]
    resources:
        **rule_resources("prune"),
    params:
        data=lambda w, input: Path(input[0]).parent,
        method=lambda w: parse_model_name(w.model)[0],
        sparsity=lambda w: f"{parse_model_name(w.model)[1]:g}",
        settings=lambda w: prune_settings_json(
            parse_model_name(w.model)[0], parse_model_name(w.model)[2]
        ),
        work_dir=lambda w: f"{R}/work/{w.model}",
    shell:
        under_torchrun(
            "prune",
            "asrprune prune --teacher {input.teacher} --data {params.data}"
            " --method {params.method} --sparsity {params.sparsity}"
            " --settings {params.settings:q}"
            " --out {output.model} --summary {output.summary} --work-dir {params.work_dir}"
            " --mlflow {input.mlflow} --threads {threads} > {log} 2>&1",
        )
