# Deployment (config deploy): ONNX exports of the teacher and the pruned models at
# deploy.sparsities, each evaluated beside its PyTorch model and timed per backend.


# Each export carries the evaluation's full decoding (beam, and the n-gram counted on
# data/lm_text.txt), which transcription then uses by default.
rule export:
    input:
        model=f"{R}/models/{{model}}.pt",
        lm_text=f"{R}/data/lm_text.txt",
    output:
        directory(f"{R}/exports/{{model}}/{{precision}}"),
    log:
        log_path("deploy", "export_{model}.{precision}"),
    benchmark:
        bench_path("deploy", "export_{model}.{precision}")
    wildcard_constraints:
        precision="fp32|int8",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("export"),
    params:
        int8=lambda w: "--int8" if w.precision == "int8" else "",
        beam=config["evaluate"]["beam"],
        lm=shlex.quote(section_json("evaluate", "lm")),
    shell:
        "asrprune export --model {input.model} --out {output} {params.int8}"
        " --beam {params.beam} --lm {params.lm} --lm-text {input.lm_text} > {log} 2>&1"


# Greedy search only: the transcripts compared with the PyTorch model's, utterance by
# utterance (tables/deploy.md).
rule evaluate_export:
    input:
        data_inputs(),
        model=f"{R}/exports/{{model}}/{{precision}}",
        mlflow=MLFLOW_IDS,
    output:
        metrics=f"{R}/metrics/exports/{{model}}.{{precision}}.json",
        hyps=directory(f"{R}/metrics/exports/{{model}}.{{precision}}.hyps"),
    log:
        log_path("deploy", "evaluate_{model}.{precision}"),
    benchmark:
        bench_path("deploy", "evaluate_{model}.{precision}")
    wildcard_constraints:
        precision="fp32|int8",
    conda:
        CONDA_ENV
    threads: config["resources"]["eval_threads"]
    resources:
        **rule_resources("evaluate_export"),
    params:
        data=lambda w, input: Path(input[0]).parent,
        batch_frames=config["evaluate"]["batch_frames"],
    shell:
        "asrprune evaluate --model {input.model} --data {params.data}"
        " --name {wildcards.model}-onnx-{wildcards.precision} --out {output.metrics}"
        " --hyps {output.hyps} --no-full --batch-frames {params.batch_frames}"
        " --splits test-clean test-other --mlflow {input.mlflow} --threads {threads}"
        " > {log} 2>&1"


rule speed_deploy:
    input:
        manifest=f"{R}/data/manifests/test-clean.jsonl",
        features=f"{R}/data/features/test-clean/index.json",
        lm_text=f"{R}/data/lm_text.txt",
        models=expand(f"{R}/models/{{model}}.pt", model=deploy_models()),
        exports=expand(
            f"{R}/exports/{{model}}/{{precision}}",
            model=deploy_models(),
            precision=("fp32", "int8"),
        ),
    output:
        f"{R}/speed_deploy.csv",
    log:
        log_path("deploy", "speed_deploy"),
    benchmark:
        bench_path("deploy", "speed_deploy")
    conda:
        CONDA_ENV
    # The whole machine, as rule speed: nothing else runs beside the timing.
    threads: all_cores()
    resources:
        **rule_resources("speed_deploy"),
    params:
        data=lambda w, input: Path(input.manifest).parents[1],
        settings=shlex.quote(deploy_timing_json()),
        beam=config["evaluate"]["beam"],
        lm=shlex.quote(section_json("evaluate", "lm")),
    shell:
        "asrprune speed-deploy --models {input.models} --exports {input.exports}"
        " --data {params.data} --out {output} --settings {params.settings}"
        " --cores {threads} --beam {params.beam} --lm {params.lm}"
        " --lm-text {input.lm_text} > {log} 2>&1"


rule deploy_tables:
    input:
        metrics=expand(f"{R}/metrics/{{model}}.json", model=deploy_models()),
        exports=expand(
            f"{R}/metrics/exports/{{model}}.{{precision}}.json",
            model=deploy_models(),
            precision=("fp32", "int8"),
        ),
        speed=f"{R}/speed_deploy.csv",
    output:
        [
            report(path, caption="../report/deploy.rst", category="Deployment")
            for path in deploy_table_files()
        ],
    log:
        log_path("results", "deploy_tables"),
    benchmark:
        bench_path("results", "deploy_tables")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("deploy_tables"),
    params:
        metrics_dir=lambda w, input: Path(input.metrics[0]).parent,
        out_dir=lambda w, output: Path(output[0]).parent,
        models=deploy_models(),
    shell:
        "asrprune deploy-tables --metrics-dir {params.metrics_dir} --speed {input.speed}"
        " --models {params.models} --out-dir {params.out_dir} > {log} 2>&1"
