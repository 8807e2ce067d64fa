"""The processes a run spans (torchrun's, or one) and the precision it computes in."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..models.encoder import native_bf16


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """torchrun sets RANK/WORLD_SIZE: NCCL on GPUs, gloo on CPU. Alone otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if size == 1:
        return World(device=torch.device("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    return World(dist.get_rank(), dist.get_world_size(), device)


def autocast(precision: str, device: torch.device):
    """bf16/fp16 autocast on CUDA; bf16 on CPUs with native bf16 only (else it is slower)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" or native_bf16() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
