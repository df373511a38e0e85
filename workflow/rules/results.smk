# The paper's tables and figures, from this run's own result files: metrics, speed and
# pruning summaries. Which tables and figures exist follows prune.methods (common.smk).


rule tables:
    input:
        metrics=expand(
            f"{R}/metrics/{{model}}.json", model=["teacher", *pruned_models()]
        ),
        hyps=expand(f"{R}/metrics/{{model}}.hyps", model=["teacher", *pruned_models()]),
        speed=f"{R}/speed.csv",
    output:
        [
            report(
                path,
                caption=f"../report/{Path(path).stem}.rst",
                category="Tables",
                labels={"table": Path(path).stem, "format": Path(path).suffix[1:]},
            )
            for path in table_files()
        ],
    log:
        log_path("results", "tables"),
    benchmark:
        bench_path("results", "tables")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("tables"),
    params:
        metrics_dir=lambda w, input: Path(input.metrics[0]).parent,
        out_dir=lambda w, output: Path(output[0]).parent,
        methods=config["prune"]["methods"],
        sparsities=config["prune"]["sparsities"],
        replicates=replicates_args(),
        full=full_sparsities_args(),
        domain_shift="--domain-shift" if DOMAIN_SHIFT else "",
    shell:
        "asrprune tables --metrics-dir {params.metrics_dir} --speed {input.speed}"
        " --methods {params.methods} --sparsities {params.sparsities} {params.replicates}"
        " {params.full} {params.domain_shift}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule figures:
    input:
        metrics=expand(
            f"{R}/metrics/{{model}}.json", model=["teacher", *pruned_models()]
        ),
        summaries=expand(f"{R}/pruning/{{model}}.json", model=pruned_models(L0_METHODS)),
        speed=f"{R}/speed.csv",
        teacher=f"{R}/models/teacher.pt",
        # the fastest backend's row of wer_rtf: deploy.csv, then speed_deploy.csv
        deploy=[p for p in deploy_table_files() if p.endswith(".csv")],
    output:
        [
            report(
                path,
                caption=f"../report/{FIGURES[Path(path).stem]}.rst",
                category="Figures",
                labels={"figure": Path(path).stem, "format": Path(path).suffix[1:]},
            )
            for path in figure_files()
        ],
    log:
        log_path("results", "figures"),
    benchmark:
        bench_path("results", "figures")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("figures"),
    params:
        metrics_dir=lambda w, input: Path(input.metrics[0]).parent,
        out_dir=lambda w, output: Path(output[0]).parent,
        methods=config["prune"]["methods"],
        sparsities=config["prune"]["sparsities"],
        deploy=lambda w, input: (
            f" --deploy-table {input.deploy[0]} --speed-deploy {input.deploy[1]}"
            if input.deploy
            else ""
        ),
    shell:
        "asrprune figures --metrics-dir {params.metrics_dir} --summaries {input.summaries}"
        " --speed {input.speed} --teacher {input.teacher} --methods {params.methods}{params.deploy}"
        " --sparsities {params.sparsities} --out-dir {params.out_dir} > {log} 2>&1"


# RESULTS.md from the run's own files, last: it waits for every other result so that its
# stage times count every job (but its own).
rule latency_check:
    input:
        table=LATENCY_TABLE,
        metrics=expand(
            f"{R}/metrics/{{model}}.json", model=["teacher", *pruned_models()]
        ),
        speed=latency_speed(),
    output:
        [
            report(path, caption="../report/latency.rst", category="Tables")
            for path in latency_table_files()
        ],
    log:
        log_path("results", "latency_check"),
    benchmark:
        bench_path("results", "latency_check")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("latency_check"),
    params:
        metrics_dir=lambda w, input: Path(input.metrics[0]).parent,
        out_dir=lambda w, output: Path(output[0]).parent,
        models=pruned_models(),
    shell:
        "asrprune latency-check --table {input.table} --speed {input.speed}"
        " --metrics-dir {params.metrics_dir} --models {params.models}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule results_doc:
    input:
        data_report=f"{R}/data/report.json",
        teacher=f"{R}/metrics/teacher.json",
        tables=[path for path in table_files() if path.endswith(".md")],
        speed=f"{R}/speed.csv",
        deploy=[path for path in deploy_table_files() if path.endswith(".md")],
        latency=[path for path in latency_table_files() if path.endswith(".md")],
        figures=[path for path in figure_files() if path.endswith(".png")],
        run=run_targets(),
    output:
        f"{R}/RESULTS.md",
    log:
        log_path("results", "results_doc"),
    benchmark:
        bench_path("results", "results_doc")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("results_doc"),
    params:
        run=RUN,
        benchmarks=f"{R}/benchmarks",
        own_benchmark=bench_path("results", "results_doc"),
        repo=workflow.basedir,
        latency=lambda w, input: (
            f" --latency-table {input.latency[0]}" if input.latency else ""
        ),
    shell:
        "asrprune results-doc --run {params.run} --data-report {input.data_report}"
        " --teacher {input.teacher} --tables {input.tables} --speed {input.speed}"
        " --deploy-tables {input.deploy}{params.latency}"
        " --figures {input.figures} --benchmarks {params.benchmarks}"
        " --exclude-benchmarks {params.own_benchmark} --repo {params.repo:q}"
        " --out {output} > {log} 2>&1"
