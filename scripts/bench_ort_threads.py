"""ONNX Runtime session settings side by side: why do more threads make decoding slower?

Times exported models (``asrprune export`` folders, ``<exports>/<model>/<precision>``) at
one thread count under several session settings, all in one process, the variants and
models taking turns round by round as in the speed rule:

- ``spinning``: every graph with ``--threads`` intra-op threads, idle workers spinning
  (ONNX Runtime's own default, and asrprune's before 2026-12-06);
- ``no-spin``: the same, idle workers sleep at once;
- ``no-spin, search 1``: as ``no-spin``, with decoder and joiner on one thread
  (:class:`~asrprune.deploy.runtime.OnnxTransducer`'s default);
- ``1 thread``: every graph on one thread, the reference the others should beat.

    python scripts/bench_ort_threads.py --exports results/embedded/exports \\
        --data results/embedded/data --threads 2 --models teacher l0-params-s0.5

Prints median encoder RTF and RTF of the whole decode (``--beam``, no LM), and each
variant's time over ``spinning``'s for the same model.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from asrprune.cli import positive_int
from asrprune.data.features import Cmvn
from asrprune.deploy.runtime import OnnxTransducer
from asrprune.speed import SpeedModel, load_utterances, measure_rtf, pin_one_thread

# (encoder threads, decoder and joiner threads, spinning); None: --threads
VARIANTS = {
    "spinning": (None, None, True),
    "no-spin": (None, None, False),
    "no-spin, search 1": (None, 1, False),
    "1 thread": (1, 1, False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exports", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", default=["teacher", "l0-params-s0.5"])
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--utterances", type=positive_int, default=10)
    ap.add_argument("--rounds", type=positive_int, default=5)
    args = ap.parse_args()

    pin_one_thread()  # torch only glues the search together here
    utts = load_utterances(args.data, args.utterances)
    models = []
    for variant, (threads, search_threads, spinning) in VARIANTS.items():
        for name in args.models:
            onnx = OnnxTransducer(
                f"{args.exports}/{name}/{args.precision}",
                threads or args.threads,
                search_threads=search_threads or args.threads,
                spinning=spinning,
            )
            cmvn = Cmvn.identity(onnx.config.input_dim)  # CMVN is inside the graph
            models.append(SpeedModel(f"{variant} | {name}", onnx, cmvn))
    rtf = measure_rtf(models, utts, 1, args.rounds, [(args.beam, None)])
    median = {k: (statistics.median(e), statistics.median(d)) for k, (e, d) in rtf.items()}
    print(f"{args.precision}, {args.threads} thread(s), beam {args.beam}, {len(utts)} utts")
    print("| variant | model | encoder RTF | decode RTF | encoder / spinning | decode / spinning |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for key, (enc, dec) in median.items():
        variant, name = key.split(" | ")
        base_enc, base_dec = median[f"spinning | {name}"]
        print(
            f"| {variant} | {name} | {enc:.5f} | {dec:.5f} | {enc / base_enc:.2f} "
            f"| {dec / base_dec:.2f} |"
        )


if __name__ == "__main__":
    with torch.inference_mode():
        main()
