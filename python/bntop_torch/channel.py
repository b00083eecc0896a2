"""Where controls come from: rank 0 reads them (from serve's stdout or Monitor.control) and,
under torch.distributed, hands the same ones to every rank in the step's one collective."""
from __future__ import annotations

import queue
from typing import Any, Callable, Optional

import torch

from . import distributed

Control = dict[str, Any]


def drain(q: "queue.Queue[Control]") -> list[Control]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


class ControlChannel:
    def __init__(self, source: "queue.Queue[Control]", rank: int, world_size: int):
        self.source = source
        self.rank = rank
        self.world_size = world_size
        # Controls that did not fit this step's slot wait for the next collective.
        self._carry: list[Control] = []

    def after_step(
        self, moments: Callable[[], torch.Tensor], device: torch.device
    ) -> tuple[Optional[torch.Tensor], list[Control]]:
        """This step's controls, the same on every rank, and (distributed) every rank's batch
        moments from `moments()`, gathered in the same collective."""
        incoming = drain(self.source) if self.rank == 0 else []
        if self.world_size == 1:
            return None, incoming
        slot, sent = self._slot(incoming, device)
        gathered, slot0 = distributed.exchange(moments(), slot, self.world_size)
        return gathered, sent if self.rank == 0 else distributed.decode_controls(slot0)

    def while_paused(
        self, timeout: float, device: torch.device, when_idle: Callable[[], list[Control]]
    ) -> list[Control]:
        """Wait up to `timeout` for controls (rank 0; `when_idle()` if none came), the same on
        every rank: a broadcast each time, which also tells the other ranks we are still here."""
        incoming: list[Control] = []
        if self.rank == 0:
            try:
                incoming = [self.source.get(timeout=timeout)] + drain(self.source)
            except queue.Empty:
                incoming = when_idle()
        if self.world_size == 1:
            return incoming
        slot, sent = self._slot(incoming, device)
        received = distributed.broadcast_controls(slot)
        return sent if self.rank == 0 else received

    def _slot(self, incoming: list[Control], device: torch.device) -> tuple[torch.Tensor, list[Control]]:
        pending = self._carry + incoming
        slot, self._carry = distributed.encode_controls(pending, device)
        return slot, pending[: len(pending) - len(self._carry)]
