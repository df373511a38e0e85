# MLflow: one job creates the store, the experiment and the parent run, so parallel jobs
# never race to create them; every job that logs takes the ids file as input.
MLFLOW_IDS = f"{R}/mlflow/ids.json"


rule mlflow_init:
    output:
        MLFLOW_IDS,
    log:
        log_path("tracking", "mlflow_init"),
    benchmark:
        bench_path("tracking", "mlflow_init")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("mlflow_init"),
    params:
        store=f"{R}/mlflow.db",
        experiment=config["mlflow"]["experiment"] or f"asrprune-{RUN}",
        run=RUN,
    shell:
        "asrprune mlflow-init --store {params.store} --experiment {params.experiment:q}"
        " --run {params.run} --out {output} > {log} 2>&1"
