"""A block's hidden-subset gather and scatter: index ops, one-hot products, transposed.

A block that keeps ``--width`` of the ``--d-model`` dimensions of the residual stream
gathers them before its modules and scatters its output back. PyTorch runs that as
``index_select`` / ``index_copy``; exported as they are, ONNX Runtime gets a Gather and a
ScatterElements on the last axis. Alternatives: a product with the one-hot (width,
d_model) matrix (and, for the scatter, a mask of the dimensions passed through), or index
ops on the middle axis of the transposed stream (the scatter as one gather from x and h
side by side). This times every form, on both runtimes, for ``--frames`` encoder frames
at batch 1, each the minimum over ``--rounds`` rounds of ``--calls`` calls (the forms take
turns):

    python scripts/bench_gather_scatter.py --width 110 --d-model 144 --frames 167

What :class:`asrprune.model.ConformerBlock` exports follows from it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asrprune.cli import positive_int
from asrprune.deploy.export import export_graph
from asrprune.deploy.runtime import ort_session
from asrprune.speed import pin_one_thread


class _Form(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.fn(x, h)


def forms(d_model: int, width: int, seed: int = 0) -> dict[str, _Form]:
    """(x (1, T, d_model), h (1, T, width)) -> gather of x plus h, or h scattered into x."""
    rng = np.random.default_rng(seed)
    index = torch.from_numpy(np.sort(rng.choice(d_model, width, replace=False)))
    one_hot = torch.from_numpy(np.eye(d_model, dtype=np.float32)[index.numpy()])
    passed = 1 - one_hot.sum(0)
    source = torch.arange(d_model)  # output dimension j: x's j, or h's k if j is kept k-th
    source[index] = d_model + torch.arange(width)

    def transposed(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)[:, rows].transpose(1, 2)

    return {
        "gather, index": _Form(lambda x, h: x.index_select(-1, index) + h),
        "gather, one-hot": _Form(lambda x, h: x @ one_hot.t() + h),
        "gather, transposed": _Form(lambda x, h: transposed(x, index) + h),
        "scatter, index": _Form(lambda x, h: x.index_copy(-1, index, h)),
        "scatter, one-hot": _Form(lambda x, h: x * passed + h @ one_hot),
        "scatter, transposed": _Form(lambda x, h: transposed(torch.cat((x, h), -1), source)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=positive_int, default=144)
    parser.add_argument("--width", type=positive_int, default=110)
    parser.add_argument("--frames", type=positive_int, default=167, help="10 s at 60 ms")
    parser.add_argument("--rounds", type=positive_int, default=30)
    parser.add_argument("--calls", type=positive_int, default=100)
    args = parser.parse_args()
    if args.width > args.d_model:
        parser.error(f"--width {args.width} is wider than --d-model {args.d_model}")
    pin_one_thread()
    x, h = torch.randn(1, args.frames, args.d_model), torch.randn(1, args.frames, args.width)
    feeds = {"x": x.numpy(), "h": h.numpy()}
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, form in forms(args.d_model, args.width).items():
            path = Path(folder) / f"{len(runs)}.onnx"
            axes = {"x": {1: "T"}, "h": {1: "T"}}
            export_graph(form, (x, h), path, {"inputs": ["x", "h"], "outputs": ["y"]}, axes)
            session = ort_session(path, 1)
            runs[name] = {
                "onnxruntime": lambda s=session: s.run(None, feeds),
                "torch": lambda f=form: f(x, h),
            }
        best = {(n, b): float("inf") for n in runs for b in ("onnxruntime", "torch")}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for (name, backend), seconds in best.items():
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        runs[name][backend]()
                    took = (time.perf_counter() - start) / args.calls
                    best[(name, backend)] = min(seconds, took)
    print(f"width {args.width} of {args.d_model}, {args.frames} frames, microseconds per call")
    print("| form | onnxruntime | torch |")
    print("| --- | ---: | ---: |")
    for name in runs:
        ort_us, torch_us = (best[(name, b)] * 1e6 for b in ("onnxruntime", "torch"))
        print(f"| {name} | {ort_us:.1f} | {torch_us:.1f} |")


if __name__ == "__main__":
    main()
