# The Conformer-Transducer teacher: every pruning job starts from it.


rule train_teacher:
    input:
        data_inputs(),
        mlflow=MLFLOW_IDS,
    output:
        f"{R}/models/teacher.pt",
    log:
        log_path("teacher", "train_teacher"),
    benchmark:
        bench_path("teacher", "train_teacher")
    conda:
        CONDA_ENV
    threads: config["resources"]["train_threads"]
    resources:
        **rule_resources("train_teacher"),
    params:
        data=lambda w, input: Path(input[0]).parent,
        model=section_json("model"),
        settings=section_json("teacher"),
        work_dir=f"{R}/work/teacher",
    shell:
        under_torchrun(
            "train_teacher",
            "asrprune train-teacher --data {params.data} --model {params.model:q}"
            " --settings {params.settings:q} --out {output} --work-dir {params.work_dir}"
            " --mlflow {input.mlflow} --threads {threads} > {log} 2>&1",
        )
