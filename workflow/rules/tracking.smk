# MLflow: one job creates the store, the experiment and the parent run, so parallel jobs
# never race to create them; every job that logs takes the ids file as input. The ids
# file carries config mlflow.require, so jobs know whether a tracking failure is fatal.
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
        require="--require" if config["mlflow"]["require"] else "",
    shell:
        "asrprune mlflow-init --store {params.store} --experiment {params.experiment:q}"
        " --run {params.run} {params.require} --out {output} > {log} 2>&1"
