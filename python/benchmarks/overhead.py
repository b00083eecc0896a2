"""Overhead of bntop_torch.watch on a ResNet-18-shaped network on CPU.

Watched and unwatched runs are interleaved (alternating which goes first) so that drift in the
machine's speed hits both alike; each run's time per step is its mean step (not the median: under
the measurement budget some steps run the optional passes and others do not, and the mean is what
the run pays). The overhead is
the median over rounds of each round's watched/unwatched ratio (a paired design: the two runs
of a round are seconds apart, while a shared machine's speed drifts by several percent over a
few minutes); the medians over all watched and all unwatched runs are printed beside it.

    python python/benchmarks/overhead.py [--rounds 6 --steps 12 --batch 64 --width 64 --optimizer sgd]
                                         [--budget 0.02 | --budget none]

With SGD the weights' step is read from its momentum buffer; with AdamW it is measured against
a copy of the weights (what any other optimizer costs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

# OpenMP's busy-waiting threads make timings on a shared (oversubscribed) machine depend on the
# gaps between operators rather than on the work: measured here, unwatched ResNet steps took 4x
# the CPU of watched ones with it. Passive waiting makes both runs comparable; set the variable
# yourself to measure otherwise. (Must be set before torch loads OpenMP.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn

import bntop_torch  # noqa: E402
from bntop_torch.budget import DEFAULT_FRACTION  # noqa: E402
from resnet import ResNet  # noqa: E402  (this directory)


def run(model: nn.Module, opt: torch.optim.Optimizer, data: list[tuple[torch.Tensor, torch.Tensor]],
        watched: bool, out: Path, cost: list[float], weight_metrics: bool = True,
        budget: Optional[float] = None) -> tuple[float, float]:
    """Mean wall and process-CPU seconds per step of one run (one warm-up step not counted).
    Watched, `cost` gets the seconds per step in bntop-torch's hooks and its writer thread, and
    the share of steps whose optional passes ran."""
    mon = (
        bntop_torch.watch(model, opt, record=out, weight_metrics=weight_metrics, measure_budget=budget)
        if watched
        else None
    )
    times, cpu = [], []
    for i, (x, y) in enumerate(data):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log(loss=loss.detach())
        if i > 0:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    if mon is not None:
        mon.close()
        assert mon.writer is not None
        cost += [mon.stopwatch.seconds / len(data), mon.writer.cpu_s / len(data), mon.budget.measured_share]
    return statistics.fmean(times), statistics.fmean(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run (+1 warm-up)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--no-weight-metrics", action="store_true", help="watch(..., weight_metrics=False)")
    parser.add_argument("--budget", default=str(DEFAULT_FRACTION),
                        help="watch(..., measure_budget=): a share of wall time, or none (every step)")
    args = parser.parse_args()
    budget = None if args.budget.lower() == "none" else float(args.budget)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = ResNet(args.width)
    if args.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    data = [(torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))) for _ in range(args.steps + 1)]
    bn = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    print(
        f"ResNet-18-shaped, {bn} BN layers, batch {args.batch}, 32x32x3, CPU, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {type(opt).__name__}, weight metrics {'off' if args.no_weight_metrics else 'on'}, "
        f"measure budget {budget if budget is not None else 'none (every step)'}"
    )
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        # The process's first runs are slower (allocator, thread pool, caches): not counted.
        run(model, opt, data, False, Path(tmp) / "warm.jsonl", [])
        run(model, opt, data, True, Path(tmp) / "warm.jsonl", [])
        costs: list[float] = []
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for w in order:
                wall, cpu = run(model, opt, data, w, Path(tmp) / f"run{r}.jsonl", costs, not args.no_weight_metrics, budget)
                runs[w].append((wall, cpu))
                label = "watched  " if w else "unwatched"
                print(f"round {r}: {label} {wall * 1000:8.1f} ms/step wall {cpu * 1000:8.1f} ms/step CPU", flush=True)
    hooks, writer = statistics.median(costs[0::3]), statistics.median(costs[1::3])
    share = statistics.median(costs[2::3])
    plain = statistics.median(t[0] for t in runs[False])
    print(f"in bntop-torch: {hooks * 1000:.1f} ms/step in its hooks (training thread, "
          f"{100 * hooks / plain:.2f}% of an unwatched step), {writer * 1000:.1f} ms/step CPU in its writer thread; "
          f"optional passes (weights, ReLU) on {100 * share:.0f}% of steps")
    for i, what in enumerate(("wall", "CPU")):
        base = statistics.median(t[i] for t in runs[False])
        mon = statistics.median(t[i] for t in runs[True])
        paired = statistics.median(w[i] / u[i] for w, u in zip(runs[True], runs[False]))
        print(f"{what:4}: overhead {100 * (paired - 1):+.2f}% (median of {len(runs[True])} paired rounds); "
              f"medians unwatched {base * 1000:.1f} ms/step, watched {mon * 1000:.1f} ms/step "
              f"({100 * (mon / base - 1):+.2f}%)")


if __name__ == "__main__":
    main()
