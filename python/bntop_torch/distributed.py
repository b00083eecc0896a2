"""torch.distributed: one collective per step that gathers every rank's per-channel batch
moments and carries rank 0's controls to every rank, so all ranks change mode, momentum and lr
at the same step (or DDP replicas would diverge)."""
from __future__ import annotations

import json
from typing import Any

import torch
import torch.distributed as dist

# Bytes of controls one step can carry (as exact small floats); the rest waits a step.
CONTROL_SLOT = 1024


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside torch.distributed."""
    if not active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def encode_controls(controls: list[dict[str, Any]], device: torch.device) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The slot carrying as many of `controls` as fit, and the ones left for the next step."""
    slot = torch.zeros(CONTROL_SLOT, device=device)
    taken = 0
    data = b"[]"
    for n in range(len(controls), 0, -1):
        candidate = json.dumps(controls[:n], separators=(",", ":")).encode()
        if len(candidate) < CONTROL_SLOT:
            data, taken = candidate, n
            break
    if taken == 0 and controls:
        # One control longer than the slot cannot be a real control; drop it, keep the others.
        return encode_controls(controls[1:], device)
    slot[0] = len(data)
    slot[1 : 1 + len(data)] = torch.tensor(list(data), dtype=torch.float32)
    return slot, controls[taken:]


def decode_controls(slot: torch.Tensor) -> list[dict[str, Any]]:
    values = slot.cpu().tolist()
    n = int(values[0])
    if n <= 0:
        return []
    decoded = json.loads(bytes(int(v) for v in values[1 : 1 + n]))
    return [c for c in decoded if isinstance(c, dict)]


def exchange(moments: torch.Tensor, slot: torch.Tensor, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather [moments, slot] from every rank: the (world_size, len(moments)) moments, still
    on the device, and rank 0's control slot (rank 0 knows its controls without decoding)."""
    mine = torch.cat([moments, slot])
    gathered = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(gathered, mine)
    stacked = torch.stack(gathered)
    return stacked[:, : moments.numel()], stacked[0, moments.numel() :]


def broadcast_controls(slot: torch.Tensor) -> list[dict[str, Any]]:
    """While paused: rank 0's controls (or a heartbeat without any) to every rank."""
    dist.broadcast(slot, src=0)
    return decode_controls(slot)
