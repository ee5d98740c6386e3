"""Where a training runs: its device, its thread count and, under ``torchrun``, its rank."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from uvis.devices import resolve_device


@dataclass(frozen=True)
class ProcessContext:
    """This process's place in a (possibly single-process) run and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def training_device(name: str, what: str, local_rank: int = 0) -> torch.device:
    """The device of a training with device setting ``name`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``): plain ``cuda`` is the process's local GPU under ``torchrun``.

    Raises:
        ConfigError: naming ``what`` when CUDA is asked for and there is none.
    """
    resolved = resolve_device(name, what)
    if resolved == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(resolved)


@contextlib.contextmanager
def process_context(device: str, what: str, num_threads: int) -> Iterator[ProcessContext]:
    """This process's rank and device; sets up ``torch.distributed`` under ``torchrun``.

    ``WORLD_SIZE`` and ``LOCAL_RANK`` are torchrun's environment variables. On the CPU torch
    uses ``num_threads`` threads. A process group set up here (NCCL on CUDA, gloo on CPU) is
    torn down on exit; one set up by the caller is used as it is.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = training_device(device, what, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    else:
        torch.set_num_threads(num_threads)
    created = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        created = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    try:
        yield ProcessContext(rank=rank, world_size=world_size, device=dev)
    finally:
        if created:
            dist.destroy_process_group()


def any_process(flag: bool, ctx: ProcessContext) -> bool:
    """``flag`` or-ed over the processes (each may, e.g., get SIGTERM at another step)."""
    if ctx.world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(ctx: ProcessContext) -> None:
    """Wait for every process (nothing to wait for in a single-process run)."""
    if ctx.world_size > 1:
        dist.barrier()
