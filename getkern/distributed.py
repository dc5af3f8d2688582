"""Devices and torchrun: the check that a device exists here, and one process per GPU (or per CPU worker
with gloo), ranks from the environment. Low in the layers (docs/architecture.md) because loading a model
onto a device, writing pairs and training all need it."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from getkern.errors import GetkernError, UsageError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def check_device(name, what: str = "device") -> torch.device:
    """``name`` as a torch.device that exists on this machine; a UsageError naming ``what`` (the option or
    argument) for a name torch does not know, CUDA without a CUDA device, or a device index past the
    last one. Called before any work, so a typo never fails midway."""
    said = f"{what}{name!r}" if what.endswith("=") else f"{what} {name}"  # "device='gpu0'", "--device gpu0"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{said}: not a device name torch knows (e.g. cpu, cuda, cuda:0)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{said}: torch sees no CUDA device here (use cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"{said}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"{said}: torch sees no MPS device here (use cpu or auto)")
    elif device.type not in ("cpu", "meta"):  # meta: shapes only (tests, planning)
        raise UsageError(f"{said}: getkern runs on cpu, cuda or mps devices, not {device.type!r}")
    return device


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1 (NCCL on CUDA, else gloo); a no-op otherwise.

    ``device``: "cpu", "cuda", or "auto"/None (CUDA when available). Under torchrun each rank uses
    cuda:LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    kind = device if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(kind)
    dev = torch.device(f"cuda:{local}") if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
        # Leave the group before interpreter teardown: a rank that exits with it still joined can abort
        # in the backend's thread destructors ("terminate called without an active exception", seen with
        # gloo on torch 2.11 in a two-rank training test), failing a run whose work was all done.
        atexit.register(_leave_process_group)
    return DistInfo(rank, world, local, dev)


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def share_refusal(error: BaseException | None) -> None:
    """Call on every rank with what rank 0's folder checks raised (None: all well): rank 0 raises it, every
    other rank raises a GetkernError with its message, so a refusal (a busy folder, another run's
    settings) stops all ranks at once instead of leaving them waiting in a barrier."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        message = [None if error is None else str(error)]
        dist.broadcast_object_list(message, src=0)
        if error is None and message[0] is not None:
            raise GetkernError(f"rank 0 refused: {message[0]}")
    if error is not None:
        raise error


def merge_on_main(part: dict) -> dict:
    """Every rank's ``part`` merged into one dict on rank 0 (other ranks get their own part back)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return dict(part)
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()} if dist.get_rank() == 0 else dict(part)
