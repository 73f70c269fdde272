"""Process-group setup for the trainer: the ``deepspeed`` launcher (or torchrun) sets the ranks; one plain process
runs as a world of one. gloo on CPU, NCCL on GPUs (DeepSpeed's accelerator picks)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from k15.net import free_port

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "CROSS_RANK", "CROSS_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK")  # fmt: skip


def init_distributed() -> None:
    """Join the launcher's process group, or make a world of one when started as a plain process."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))  # fmt: skip
    from deepspeed.accelerator import get_accelerator

    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name())


def close_distributed() -> None:
    """Leave the process group (at the end of a run): a process that exits with gloo's threads still running can
    abort in their destructors ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (the object itself in a world of one)."""
    import torch.distributed as dist

    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def without_launcher_env() -> Iterator[None]:
    """Hide the launcher's rank variables while a vLLM engine starts: its worker processes inherit the
    environment and must form their own process group, not join the trainer's."""
    saved = {k: os.environ.pop(k) for k in LAUNCHER_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)
