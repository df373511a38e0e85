# Data: a corpus (synthesised or LibriSpeech) -> checked manifests -> report, BPE,
# features and their global normalisation.
check_data_source()

if SOURCE == "embedded":

    rule corpus_embedded:
        output:
            expand(f"{R}/corpus/{{split}}.jsonl", split=SPLITS),
            summary=f"{R}/corpus/summary.json",
        log:
            log_path("data", "corpus_embedded"),
        benchmark:
            bench_path("data", "corpus_embedded")
        conda:
            CONDA_ENV
        threads: DATA_THREADS
        resources:
            **rule_resources("corpus_embedded"),
        params:
            settings=section_json("data", "embedded"),
            out=lambda w, output: Path(output[0]).parent,
        shell:
            "asrprune corpus-embedded --settings {params.settings:q} --out {params.out}"
            " --threads {threads} > {log} 2>&1"

else:

    rule corpus_librispeech:
        output:
            expand(f"{R}/corpus/{{split}}.jsonl", split=SPLITS),
        log:
            log_path("data", "corpus_librispeech"),
        benchmark:
            bench_path("data", "corpus_librispeech")
        conda:
            CONDA_ENV
        threads: 1
        resources:
            **rule_resources("corpus_librispeech"),
        params:
            root=config["data"]["librispeech"]["root"],
            subsets=section_json("data", "librispeech", "subsets"),
            out=lambda w, output: Path(output[0]).parent,
        shell:
            "asrprune corpus-librispeech --root {params.root:q} --subsets {params.subsets:q}"
            " --out {params.out} > {log} 2>&1"


# Never part of `all`: run it by name, with internet (the archive is checked against
# the MD5 OpenSLR publishes before anything is unpacked), e.g.
#   snakemake --cores 1 download/LibriSpeech/test-clean --config ...
rule download_librispeech:
    output:
        directory("download/LibriSpeech/{subset}"),
    log:
        "download/logs/{subset}.log",
    benchmark:
        "download/benchmarks/{subset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("download_librispeech"),
    params:
        mirror=config["data"]["librispeech"]["mirror"],
    shell:
        "asrprune download-librispeech --mirror {params.mirror:q} --subset {wildcards.subset}"
        " --dest download/LibriSpeech > {log} 2>&1"


rule check_split:
    input:
        f"{R}/corpus/{{split}}.jsonl",
    output:
        manifest=f"{R}/data/manifests/{{split}}.jsonl",
        excluded=f"{R}/data/excluded/{{split}}.json",
    log:
        log_path("data", "check_split_{split}"),
    benchmark:
        bench_path("data", "check_split_{split}")
    conda:
        CONDA_ENV
    threads: DATA_THREADS
    resources:
        **rule_resources("check_split"),
    params:
        settings=section_json("data", "checks"),
    shell:
        "asrprune check-split --settings {params.settings:q} --raw {input}"
        " --manifest {output.manifest} --excluded {output.excluded}"
        " --threads {threads} > {log} 2>&1"


rule data_report:
    input:
        manifests=expand(f"{R}/data/manifests/{{split}}.jsonl", split=SPLITS),
        excluded=expand(f"{R}/data/excluded/{{split}}.json", split=SPLITS),
        # the embedded corpus's text domains and engines per split
        composition=[f"{R}/corpus/summary.json"] if SOURCE == "embedded" else [],
        mlflow=MLFLOW_IDS,
    output:
        report(
            f"{R}/data/report.json",
            caption="../report/data_report.rst",
            category="Data",
        ),
    log:
        log_path("data", "data_report"),
    benchmark:
        bench_path("data", "data_report")
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("data_report"),
    params:
        source=SOURCE,
        splits=" ".join(SPLITS),
        composition=lambda w, input: (
            f"--composition {input.composition}" if input.composition else ""
        ),
        manifests=lambda w, input: Path(input.manifests[0]).parent,
        excluded=lambda w, input: Path(input.excluded[0]).parent,
    shell:
        "asrprune data-report --source {params.source} --manifests {params.manifests}"
        " --excluded {params.excluded} --splits {params.splits} {params.composition}"
        " --mlflow {input.mlflow} --out {output} > {log} 2>&1"


rule train_bpe:
    input:
        f"{R}/data/manifests/train.jsonl",
    output:
        f"{R}/data/bpe.model",
    log:
        log_path("data", "train_bpe"),
    benchmark:
        bench_path("data", "train_bpe")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("train_bpe"),
    params:
        vocab_size=config["data"]["tokenizer"]["vocab_size"],
    shell:
        "asrprune train-bpe --manifest {input} --vocab-size {params.vocab_size}"
        " --out {output} > {log} 2>&1"


# What the full decoding's n-gram is counted on (config evaluate.lm_text), checked against
# every evaluation transcript of the run.
rule lm_text:
    input:
        train=f"{R}/data/manifests/train.jsonl",
        evaluation=expand(f"{R}/data/manifests/{{split}}.jsonl", split=SPLITS[1:]),
        # the pool reads the corpus's sentence cache, which the corpus job fills
        corpus=[f"{R}/corpus/summary.json"] if LM_TEXT == "pool" else [],
    output:
        f"{R}/data/lm_text.txt",
    log:
        log_path("data", "lm_text"),
    benchmark:
        bench_path("data", "lm_text")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("lm_text"),
    params:
        source=LM_TEXT,
        pool=lambda w, input: (
            f"--settings {shlex.quote(section_json('data', 'embedded'))}"
            f" --cache {Path(input.corpus[0]).parent / 'cache'}"
            if input.corpus
            else ""
        ),
    shell:
        "asrprune lm-text --source {params.source} --train {input.train}"
        " --evaluation {input.evaluation} {params.pool} --out {output} > {log} 2>&1"


rule extract_features:
    input:
        f"{R}/data/manifests/{{split}}.jsonl",
    output:
        feats=f"{R}/data/features/{{split}}/feats.npy",
        index=f"{R}/data/features/{{split}}/index.json",
    log:
        log_path("data", "extract_features_{split}"),
    benchmark:
        bench_path("data", "extract_features_{split}")
    conda:
        CONDA_ENV
    threads: DATA_THREADS
    resources:
        **rule_resources("extract_features"),
    params:
        out=lambda w, output: Path(output.index).parent,
    shell:
        "asrprune extract-features --manifest {input} --out {params.out}"
        " --threads {threads} > {log} 2>&1"


rule cmvn:
    input:
        feats=f"{R}/data/features/train/feats.npy",
        index=f"{R}/data/features/train/index.json",
    output:
        f"{R}/data/cmvn.json",
    log:
        log_path("data", "cmvn"),
    benchmark:
        bench_path("data", "cmvn")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("cmvn"),
    params:
        features=lambda w, input: Path(input.index).parent,
        per_utterance=(
            "--per-utterance" if config["data"]["cmvn"] == "utterance" else ""
        ),
    shell:
        "asrprune cmvn --features {params.features} {params.per_utterance} --out {output}"
        " > {log} 2>&1"
