# One pruning job per method (ours, its ablations, the baselines), target sparsity and
# replicate (config prune.seeds), each from the teacher. Model names: <method>-s<sparsity>,
# and -seed<n> for replicates n > 0 (asrprune.results.layout.model_name).


rule latency_table:
    input:
        manifest=f"{R}/data/manifests/test-clean.jsonl",
        features=f"{R}/data/features/test-clean/index.json",
        teacher=f"{R}/models/teacher.pt",
    output:
        LATENCY_TABLE,
    log:
        log_path("prune", "latency_table"),
    benchmark:
        bench_path("prune", "latency_table")
    conda:
        CONDA_ENV
    # the whole machine, so nothing runs beside the timing (the profile sets its threads)
    threads: all_cores()
    resources:
        **rule_resources("latency_table"),
    params:
        data=lambda w, input: Path(input.manifest).parents[1],
        profile=LATENCY["profile"],
        settings=json.dumps(
            {k: v for k, v in LATENCY.items() if k != "profile"} | LATENCY_MULTIPLES
        ),
    shell:
        "asrprune latency-table --teacher {input.teacher} --data {params.data} --out {output}"
        " --device {params.profile[device]} --backend {params.profile[backend]}"
        " --threads {params.profile[threads]} --settings {params.settings:q} > {log} 2>&1"


rule prune:
    input:
        data_inputs(),
        unpack(latency_input),
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
        latency=lambda w, input: (
            f" --latency-table {input.latency}" if "latency" in input.keys() else ""
        ),
    shell:
        under_torchrun(
            "prune",
            "asrprune prune --teacher {input.teacher} --data {params.data}"
            " --method {params.method} --sparsity {params.sparsity}"
            " --settings {params.settings:q}"
            " --out {output.model} --summary {output.summary} --work-dir {params.work_dir}"
            " --mlflow {input.mlflow} --threads {threads}{params.latency} > {log} 2>&1",
        )
