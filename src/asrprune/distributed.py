"""Data parallelism across processes: torchrun's environment, the process group, and the
few collectives the trainer needs.

A job started by ``torchrun --nproc_per_node=N`` finds RANK, LOCAL_RANK and WORLD_SIZE in
its environment; :func:`init` joins the process group they describe (NCCL on GPUs, gloo
on the CPU) once and pins the process to its GPU. Without them, or with WORLD_SIZE 1,
every function here is a no-op for the single process, so the trainer has one code path.

Only rank 0 writes files and logs (:func:`is_main_process` needs no torch, so the file
writers in ``asrprune.io`` can ask it); every rank holds the same model and computes the
same results.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from asrprune.errors import AsrpruneError

ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
# Rank 0 decodes the dev subset while the others wait in their next collective; NCCL's
# default of 10 minutes would count that as a hang.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the job's processes."""

    rank: int = 0  # 0 .. size - 1, over all nodes
    local_rank: int = 0  # on this node: the index of its GPU
    size: int = 1  # processes in all

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def env_world() -> World:
    """The world torchrun's variables describe; a single process when they are unset."""
    values = {}
    for name in ENV:
        raw = os.environ.get(name)
        if raw is None:
            values[name] = 1 if name == "WORLD_SIZE" else 0
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise AsrpruneError(
                f"environment variable {name}={raw!r}: expected an integer"
            ) from None
    world = World(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])
    if world.size < 1 or not 0 <= world.rank < world.size or world.local_rank < 0:
        raise AsrpruneError(
            f"RANK={world.rank}, LOCAL_RANK={world.local_rank}, WORLD_SIZE={world.size}: "
            "expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
        )
    return world


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed job (no torch import)."""
    return env_world().main


def init() -> World:
    """Join the process group of a torchrun job (once; later calls return the same world)
    and make this process's GPU the current device. A single process: nothing to do."""
    world = env_world()
    if not world.distributed:
        return world
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        if dist.get_world_size() != world.size:
            raise AsrpruneError(
                f"a process group of {dist.get_world_size()} is running, WORLD_SIZE says "
                f"{world.size}"
            )
        return world
    if torch.cuda.is_available():
        if world.local_rank >= torch.cuda.device_count():
            raise AsrpruneError(
                f"LOCAL_RANK {world.local_rank} but this node has {torch.cuda.device_count()} "
                "GPUs: start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(world.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    return world


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session() -> Iterator[World]:
    """:func:`init` on entry, :func:`shutdown` on exit: one command's distributed life."""
    world = init()
    try:
        yield world
    finally:
        if world.distributed:
            shutdown()


def device(world: World):
    """The device a rank trains on: its own GPU, or the CPU without CUDA."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


# -----------------------------------------------------------------------------
# collectives (every rank must call them, in the same order)


def all_reduce_sum(tensor):
    """Sum ``tensor`` over the ranks, in place; returns it."""
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(params: Sequence[Any], size: int) -> None:
    """Replace each parameter's gradient by its mean over the ranks, in one collective.

    A parameter without a gradient on this rank counts as a zero gradient, so ranks whose
    graphs differ still agree on the tensors they exchange.
    """
    import torch

    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of numels,)
    all_reduce_sum(flat).div_(size)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(p).clone()
        offset += g.numel()


def broadcast_tensors(tensors: Sequence[Any], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values, in one collective."""
    import torch
    import torch.distributed as dist

    if not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.broadcast(flat, src)
    offset = 0
    for t in tensors:
        t.data.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (picklable), on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
