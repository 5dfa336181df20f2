"""Data-parallel training under `torchrun`: which process this is, its device, and the few collectives the
training loop needs.

`torchrun --nproc_per_node N` starts N processes and tells each its place through the environment (RANK,
WORLD_SIZE, LOCAL_RANK, and MASTER_ADDR/MASTER_PORT for the rendezvous). Without them the process is the only one
and every collective here is a no-op, so one training loop serves both cases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

#: How long a collective waits for the slowest process. Long, because the others wait for rank 0 while it reads the
#: whole dataset into the frame cache (a large LeRobotDataset takes many minutes).
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def _environment_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


@dataclass
class Distributed:
    """This process's place among `world_size` training processes (rank 0 logs and writes)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Where collectives run: the process's GPU under NCCL, else the CPU (set by `start`).
    _device: torch.device = field(default=torch.device("cpu"), init=False, repr=False)

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"inconsistent process placement: rank {self.rank}, world size {self.world_size}, "
                f"local rank {self.local_rank}"
            )

    @classmethod
    def from_environment(cls) -> Distributed:
        """The placement torchrun gives (RANK, WORLD_SIZE, LOCAL_RANK); one process when they are absent."""
        world_size = _environment_int("WORLD_SIZE")
        if world_size is None:
            return cls()
        rank = _environment_int("RANK")
        if rank is None:
            raise ValueError("WORLD_SIZE is set but RANK is not: start several processes with torchrun")
        local_rank = _environment_int("LOCAL_RANK")
        return cls(rank=rank, world_size=world_size, local_rank=rank if local_rank is None else local_rank)

    @property
    def enabled(self) -> bool:
        """Whether there are several processes (and a process group)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, validates and writes checkpoints, losses and the frame cache."""
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """This process's device for a `--device` of `requested`: with several processes `cuda` means the GPU of
        this process's local rank; a fixed index would put every process on one GPU and is refused."""
        device = torch.device(requested)
        if not self.enabled or device.type != "cuda":
            return device
        if device.index is not None:
            raise ValueError(
                f"--device {requested} with {self.world_size} processes: give --device cuda, each process then takes "
                "the GPU of its LOCAL_RANK (choose GPUs with CUDA_VISIBLE_DEVICES)"
            )
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {self.local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes. Nothing with one process."""
        if not self.enabled or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=self.rank,
            world_size=self.world_size,
            timeout=COLLECTIVE_TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
        if device.type == "cuda":
            self._device = device

    def stop(self) -> None:
        """Leave the process group."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over every process (a new tensor on `tensor`'s device)."""
        if not self.enabled:
            return tensor.clone()
        total = tensor.detach().to(self._device, copy=True)
        dist.all_reduce(total)
        return total.to(tensor.device)

    def all_agree(self, ok: bool) -> bool:
        """Whether every process says `ok`; also a barrier. A process that failed says so here instead of leaving
        the others waiting forever in the next collective."""
        if not self.enabled:
            return ok
        flag = torch.tensor([1 if ok else 0], device=self._device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())
