# Speed: the encoder's real-time factor of the teacher and every pruned model, timed in one
# job on one thread, the models taking turns round by round.


rule speed:
    input:
        manifest=f"{R}/data/manifests/test-clean.jsonl",
        features=f"{R}/data/features/test-clean/index.json",
        teacher=f"{R}/models/teacher.pt",
        models=expand(f"{R}/models/{{model}}.pt", model=pruned_models()),
    output:
        report(f"{R}/speed.csv", caption="../report/speed.rst", category="Speed"),
    log:
        log_path("speed", "speed"),
    benchmark:
        bench_path("speed", "speed")
    conda:
        CONDA_ENV
    # The whole machine, so no other job runs beside the timing (the command itself uses
    # one torch thread): RTFs stay comparable between runs, not only between models.
    threads: all_cores()
    resources:
        **rule_resources("speed"),
    params:
        data=lambda w, input: Path(input.manifest).parents[1],
        utterances=config["speed"]["utterances"],
        warmup_rounds=config["speed"]["warmup_rounds"],
        rounds=config["speed"]["rounds"],
    shell:
        "asrprune speed --teacher {input.teacher} --models {input.models}"
        " --data {params.data} --out {output} --utterances {params.utterances}"
        " --warmup-rounds {params.warmup_rounds} --rounds {params.rounds} > {log} 2>&1"
