# One pruning job per method (ours, its ablations, the baselines) and target sparsity,
# each from the teacher.


rule prune:
    input:
        data_inputs(),
        teacher=f"{R}/models/teacher.pt",
        mlflow=MLFLOW_IDS,
    output:
        model=f"{R}/models/{{method}}-s{{sparsity}}.pt",
        summary=f"{R}/pruning/{{method}}-s{{sparsity}}.json",
    log:
        log_path("prune", "{method}-s{sparsity}"),
    benchmark:
        bench_path("prune", "{method}-s{sparsity}")
    wildcard_constraints:
        method="[a-z0-9-]+",
        sparsity=r"0\.[0-9]+",
    conda:
        CONDA_ENV
    threads: config["resources"]["prune_threads"]
    resources:
        **rule_resources("prune"),
    params:
        data=lambda w, input: Path(input[0]).parent,
        settings=lambda w: prune_settings_json(w.method),
        work_dir=lambda w: f"{R}/work/{w.method}-s{w.sparsity}",
    shell:
        under_torchrun(
            "prune",
            "asrprune prune --teacher {input.teacher} --data {params.data}"
            " --method {wildcards.method} --sparsity {wildcards.sparsity}"
            " --settings {params.settings:q}"
            " --out {output.model} --summary {output.summary} --work-dir {params.work_dir}"
            " --mlflow {input.mlflow} --threads {threads} > {log} 2>&1",
        )
