"""DDP plumbing: which process this is, joining torchrun's process group, summing over ranks.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; any rendezvous option of torchrun works since the
process group is initialized from the environment. One process (no torchrun) is Dist(0, 1, 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from vqa.device import resolve_device
from vqa.errors import UserError


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank / world size under torchrun, (0, 1) otherwise."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE set), pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name)
    if device.type == "cuda" and dist.enabled:
        visible = torch.cuda.device_count()
        if dist.local_rank >= visible:
            raise UserError(
                f"process {dist.local_rank} of this node has no GPU: {visible} visible and {world} processes "
                f"started; use NPROC={visible} (torchrun --nproc_per_node {visible}) or train.device=cpu"
            )
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist.enabled and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist, device


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_sum(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    """Element-wise sum over ranks (float64, so sums of per-sample losses stay exact enough)."""
    if not dist.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return t.tolist()


def all_gather_dicts(parts: tuple[dict, ...], dist: Dist) -> tuple[dict, ...]:
    """Merge per-rank dicts (each rank scored its own shard of questions) into one of each."""
    if not dist.enabled:
        return parts
    gathered: list = [None] * dist.world
    torch_dist.all_gather_object(gathered, parts)
    return tuple({k: v for rank in gathered for k, v in rank[i].items()} for i in range(len(parts)))
