"""A 2-process DDP run on gloo: rank 0 streams the per-rank drift, and controls reach both ranks."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import bntop_torch
from helpers import of_kind, read_records

WORLD = 2
STEPS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(sync: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if sync else model


def worker(rank: int, port: int, out: str, sync: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = make_model(sync)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    seen: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for bn in bns:
        def pre(m: nn.Module, args: tuple[torch.Tensor], i: int = len(seen)) -> None:
            if torch.is_grad_enabled():
                x = args[0].detach().double()
                var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
                seen[i].append((mean, var))
        seen.append([])
        bn.register_forward_pre_hook(pre)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    settings: list[list[tuple[bool, float]]] = []
    pause_s = 0.0
    mon = bntop_torch.watch(
        ddp, opt, record=Path(out) / "run.jsonl" if rank == 0 else None, snapshot_interval_s=0, arrays_interval_s=0
    )
    for step in range(STEPS):
        g = torch.Generator().manual_seed(100 * rank + step)
        # Rank 1's batches sit elsewhere: its statistics drift from the global ones.
        x = torch.randn(8, 3, 5, 5, generator=g) * (1 + rank) + rank
        loss = nn.functional.cross_entropy(ddp(x), torch.arange(8) % 3)
        opt.zero_grad()
        loss.backward()
        if rank == 0 and step == 1:
            mon.control({"control": "set_mode", "layer": 0, "mode": "eval"})
            mon.control({"control": "set_momentum", "layer": 1, "momentum": 0.3})
            mon.control({"control": "pause"})
            threading.Timer(1.0, mon.control, ({"control": "resume"},)).start()
        start = time.monotonic()
        opt.step()
        if step == 1:
            pause_s = time.monotonic() - start
        settings.append([(bn.training, bn.momentum) for bn in bns])
        model.train()  # every epoch, in real loops; the pinned eval mode must survive it
    mon.close()
    torch.save({"seen": seen, "settings": settings, "pause_s": pause_s}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def run_ddp(tmp_path: Path, sync: bool) -> tuple[list[dict], list[dict]]:
    mp.start_processes(worker, args=(free_port(), str(tmp_path), sync), nprocs=WORLD, join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    return read_records(tmp_path / "run.jsonl"), ranks


def expected_rank_drift(ranks: list[dict], layer: int, step: int, eps: float = 1e-5) -> list[float]:
    means = torch.stack([r["seen"][layer][step][0] for r in ranks])
    vars_ = torch.stack([r["seen"][layer][step][1] for r in ranks])
    mg = means.mean(0)
    vg = (vars_ + (means - mg) ** 2).mean(0)
    r = (vars_ + eps).sqrt() / (vg + eps).sqrt()
    d = (means - mg) / (vg + eps).sqrt()
    return (d**2 + (r - 1) ** 2).mean(1).sqrt().tolist()


# torch's SyncBatchNorm runs on GPUs only ("SyncBatchNorm expected input tensor to be on GPU"),
# so this CPU test runs BatchNorm (the SyncBatchNorm branch, pooled statistics, is untested here).
def test_ddp_rank_drift_and_controls_on_every_rank(tmp_path: Path) -> None:
    sync = False
    records, ranks = run_ddp(tmp_path, sync)
    header = records[0]
    assert header["producer"]["world_size"] == WORLD
    assert [layer.get("sync", False) for layer in header["layers"]] == [sync, sync]
    snaps = of_kind(records, "snapshot")
    assert [s["step"] for s in snaps] == list(range(1, STEPS + 1))
    for s in snaps:
        for i, layer in enumerate(s["layers"]):
            want = expected_rank_drift(ranks, i, s["step"] - 1)
            assert layer["rank_drift"] == pytest.approx(want, rel=1e-4), (s["step"], i)
            assert min(want) > 0.02  # the ranks really see different batches
    # Batch statistics: rank 0's own with BatchNorm, the pooled global ones with SyncBatchNorm.
    first = snaps[0]["layers"][0]
    means = torch.stack([r["seen"][0][0][0] for r in ranks])
    want_mean = means.mean(0) if sync else means[0]
    torch.testing.assert_close(torch.tensor(first["batch_mean"], dtype=torch.float64), want_mean, rtol=1e-5, atol=1e-6)
    # The controls rank 0 got took effect on both ranks at the same step.
    assert ranks[0]["settings"] == ranks[1]["settings"]
    # Queued before step 2: applied in its step hook, on both ranks, after it.
    assert ranks[0]["settings"][0] == [(True, 0.1), (True, 0.1)]
    assert ranks[0]["settings"][1] == [(False, 0.1), (True, 0.3)]
    assert ranks[0]["settings"][-1] == [(False, 0.1), (True, 0.3)]
    # Pause held both ranks in optimizer.step() until the resume a second later.
    assert ranks[0]["pause_s"] > 0.8 and ranks[1]["pause_s"] > 0.8
    echoed = [(c["step"], c["control"]["control"]) for c in of_kind(records, "control")]
    assert echoed == [(2, "set_mode"), (2, "set_momentum"), (2, "pause"), (2, "resume")]
