# Evaluation: WER on every split, size and parameter counts, hypotheses per utterance.


rule evaluate:
    input:
        data_inputs(),
        model=f"{R}/models/{{model}}.pt",
        mlflow=MLFLOW_IDS,
        # only where the full decoding counts the n-gram: a new text reruns only those
        lm_text=lambda w: [f"{R}/data/lm_text.txt"] if full_decoding_of(w.model) else [],
    output:
        metrics=report(
            f"{R}/metrics/{{model}}.json",
            caption="../report/metrics.rst",
            category="Models",
        ),
        hyps=directory(f"{R}/metrics/{{model}}.hyps"),
    log:
        log_path("evaluate", "{model}"),
    benchmark:
        bench_path("evaluate", "{model}")
    conda:
        CONDA_ENV
    threads: config["resources"]["eval_threads"]
    resources:
        **rule_resources("evaluate"),
    params:
        data=lambda w, input: Path(input[0]).parent,
        batch_frames=config["evaluate"]["batch_frames"],
        decoding=lambda w, input: decoding_args(w.model, input.lm_text),
        splits=lambda w: evaluate_splits(w.model),
    shell:
        "asrprune evaluate --model {input.model} --data {params.data} --name {wildcards.model}"
        " --splits {params.splits}"
        " --out {output.metrics} --hyps {output.hyps} {params.decoding}"
        " --batch-frames {params.batch_frames} --mlflow {input.mlflow}"
        " --threads {threads} > {log} 2>&1"
