"""RNN-T loss: asrprune's rnnt_nll against torchaudio's kernel, side by side in one process.

Two measurements, rounds interleaved so machine noise hits both alike:
- the loss alone (forward and backward) on lattices shaped like the embedded corpus's
  batches and two extremes;
- a whole teacher step of the default model (bf16 autocast where the CPU has it,
  intermediate CTC, AdamW) on a random batch shaped like a 4,800-frame batch of the corpus;
  and the same step with the pruned loss (``train.rnnt_band`` 5: the joiner on bands of 5
  tokens, plus the additive joiner's loss at 0.5) against ours.
Prints median milliseconds and the ratios.

    .venv/bin/python scripts/bench_rnnt_loss.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch

import asrprune.model.transducer as transducer
from asrprune.cli import positive_int
from asrprune.config import load_config
from asrprune.model.pruned_rnnt import SimpleJoiner
from asrprune.model.rnnt_loss import rnnt_nll, torchaudio_nll
from asrprune.model.structure import ModelConfig
from asrprune.speed import schedule

VOCAB = 256
LATTICES = [(13, 90, 22), (5, 300, 60), (40, 30, 8)]  # (utterances, frames, tokens)


def interleaved(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds of each function over the rounds of the speed rule's schedule (one
    warm-up round, then every function once per round)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r, name in schedule(list(fns), 1, rounds):
        start = time.perf_counter()
        fns[name]()
        if r >= 0:
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def loss_alone(B: int, T: int, U: int, rounds: int) -> dict[str, float]:
    logits = torch.randn(B, T, U + 1, VOCAB, requires_grad=True)
    targets = torch.randint(1, VOCAB, (B, U))
    lens, tlens = torch.full((B,), T), torch.full((B,), U)
    lens[-2:], tlens[-2:] = T - 7, U - 3

    def run(nll):
        return lambda: nll(logits, targets, lens, tlens, 0).mean().backward()

    return interleaved({"torchaudio": run(torchaudio_nll), "rnnt_nll": run(rnnt_nll)}, rounds)


def teacher_step(config_path: str, rounds: int) -> dict[str, float]:
    values = dict(load_config(config_path)["model"], vocab_size=VOCAB)
    net = transducer.Transducer(ModelConfig.from_dict(values, "model")).train()
    simple = SimpleJoiner(net.structure.d_model, net.config.predictor_dim, VOCAB)
    optimizer = torch.optim.AdamW([*net.parameters(), *simple.parameters()])
    B, T, U = 13, 360, 22  # 13 utterances of 3.6 s (the corpus's mean) fill 4,800 frames
    feats, lens = torch.randn(B, T, 80), torch.full((B,), T)
    tokens, tlens = torch.randint(1, VOCAB, (B, U)), torch.full((B,), U)
    lens[-3:], tlens[-3:] = 300, 18

    def run(nll, band=None):
        def step():
            with mock.patch.object(transducer, "transducer_nll", nll):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = net(feats, lens, tokens, tlens, inter_ctc_block=3, band=band)
                    loss = out.rnnt_loss + 0.15 * (out.ctc_loss + out.inter_ctc_loss)
                    if out.simple_loss is not None:
                        loss = loss + 0.5 * out.simple_loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

        return step

    fns = {"torchaudio": run(torchaudio_nll), "rnnt_nll": run(rnnt_nll)}
    return interleaved({**fns, "band 5": run(rnnt_nll, (simple, 5))}, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--rounds", type=positive_int, default=8)
    parser.add_argument("--config", default="config/config.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| case | torchaudio ms | rnnt_nll ms | ratio |\n| --- | ---: | ---: | ---: |")
    cases = [
        (f"loss B={B} T={T} U={U}", lambda B=B, T=T, U=U: loss_alone(B, T, U, args.rounds))
        for B, T, U in LATTICES
    ]
    cases.append(("teacher step, 13 x 3.6 s", lambda: teacher_step(args.config, args.rounds)))
    for name, measure in cases:
        t = measure()
        ratio = t["rnnt_nll"] / t["torchaudio"]
        print(f"| {name} | {t['torchaudio'] * 1e3:.0f} | {t['rnnt_nll'] * 1e3:.0f} | {ratio:.2f} |")
        if "band 5" in t:
            print(
                f"\npruned loss, band of 5 tokens: {t['band 5'] * 1e3:.0f} ms a step, "
                f"{t['band 5'] / t['rnnt_nll']:.2f}x rnnt_nll's"
            )


if __name__ == "__main__":
    main()
