"""A Conformer block's time at residual-stream widths on and off a multiple of 8.

Times one full block (both FFNs, attention, convolution; the default architecture's
heads and channels) in a stream of each ``--widths`` dimension count, and its FFN module
alone, on one CPU thread at batch 1 for ``--frames`` encoder frames. The widths take
turns, round by round; each entry is the fastest of ``--rounds`` rounds of ``--calls``
calls. Prints each width's time and its ratio to the time at ``--reference``:

    python scripts/bench_hidden_widths.py --widths 144 143 142 140 139 136 128

Why ``prune.l0.hidden_multiple`` exists: the latency table interpolates between timed
widths and so cannot see that a stream a few dimensions narrower than an aligned width
can run slower than at that width.
"""

from __future__ import annotations

import argparse
import time

import torch

from asrprune.cli import positive_int
from asrprune.model import ConformerBlock, FeedForward, ModelConfig
from asrprune.model.conformer import relative_positions
from asrprune.model.structure import BlockStructure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=positive_int, nargs="+", default=[144, 143, 139, 136])
    p.add_argument("--reference", type=positive_int, default=144)
    p.add_argument("--frames", type=positive_int, default=60)
    p.add_argument("--rounds", type=positive_int, default=30)
    p.add_argument("--calls", type=positive_int, default=10)
    a = p.parse_args()
    widths = sorted(set(a.widths) | {a.reference}, reverse=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig()  # the default architecture's heads, head width and channels
    full = BlockStructure(config.num_heads, config.ffn_dim, config.ffn_dim)
    cases = {}
    for d in widths:
        x = torch.randn(1, a.frames, d)
        pos = relative_positions(a.frames, config.d_model, "cpu")  # read at the full width
        valid = torch.ones(1, a.frames, dtype=torch.bool)
        block = ConformerBlock(full, d, config).eval()
        cases[("block", d)] = (block, (x, pos, valid))
        cases[("ffn", d)] = (FeedForward(d, config.ffn_dim).eval(), (x,))
    best = dict.fromkeys(cases, float("inf"))
    with torch.no_grad():
        for _ in range(a.rounds):
            for key, (module, inputs) in cases.items():
                t0 = time.perf_counter()
                for _ in range(a.calls):
                    module(*inputs)
                best[key] = min(best[key], (time.perf_counter() - t0) / a.calls)
    print(f"{'width':>6} {'block ms':>9} {'ratio':>6} {'ffn ms':>7} {'ratio':>6}")
    for d in widths:
        b, f = best[("block", d)], best[("ffn", d)]
        rb, rf = b / best[("block", a.reference)], f / best[("ffn", a.reference)]
        print(f"{d:>6} {b * 1e3:>9.3f} {rb:>6.3f} {f * 1e3:>7.3f} {rf:>6.3f}")


if __name__ == "__main__":
    main()
