"""The stream's plumbing: log() timing, decimation like bntop's recorder, a writer that never
blocks training, and the end record."""
from __future__ import annotations

import math
import os
import threading
import time

import pytest
import torch
from torch import nn

import bntop_torch
from bntop_torch.sink import Writer
from bntop_torch.stream import Decimator, Keep
from helpers import of_kind, read_records


def tiny() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_log_before_or_after_the_step_goes_with_that_step(tmp_path) -> None:
    model, opt = tiny()
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=0) as mon:
        for i in range(4):
            loss = model(torch.randn(6, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            if i == 0:
                mon.log(loss=10.0, accuracy=0.5)  # between the forward and the step
            opt.step()
            if i == 1:
                mon.log(loss=11.0)  # after the step, before the next forward
            if i == 2:
                mon.log(accuracy=torch.tensor(0.75))
    snaps = of_kind(read_records(path), "snapshot")
    assert [s["loss"] for s in snaps[:2]] == [10.0, 11.0]
    assert snaps[0]["batch_accuracy"] == 0.5 and snaps[2]["batch_accuracy"] == 0.75
    assert math.isnan(snaps[2]["loss"]) and math.isnan(snaps[3]["loss"]) and math.isnan(snaps[1]["batch_accuracy"])


def test_decimation_follows_the_rust_recorder() -> None:
    d = Decimator(snapshot_interval_s=0.04, arrays_interval_s=2.0)
    times = [0.0, 0.01, 0.05, 0.06, 1.0, 2.0, 2.03, 2.1]
    got = [d.decide(t) for t in times]
    assert got == [Keep.WHOLE, Keep.SKIP, Keep.SUMMARY, Keep.SKIP, Keep.SUMMARY, Keep.WHOLE, Keep.SKIP, Keep.SUMMARY]
    d.control_applied()
    assert d.decide(2.11) is Keep.WHOLE  # the step after a control, however soon


def test_a_step_keeps_arrays_only_if_its_forward_measured_them() -> None:
    """The arrays decision is taken when the step's forward starts (arrays_due) and held to."""
    d = Decimator(snapshot_interval_s=0.04, arrays_interval_s=2.0)
    assert d.arrays_due(0.0) and d.decide(0.1, True) is Keep.WHOLE
    # Not due at the forward (1.99 s after the last arrays), due by the record: stays thin.
    assert not d.arrays_due(2.09)
    assert d.decide(2.2, False) is Keep.SUMMARY
    # The next forward finds them due.
    assert d.arrays_due(2.25) and d.decide(2.3, True) is Keep.WHOLE
    d.control_applied()
    assert d.arrays_due(2.31)


def test_the_last_step_is_kept_whole_and_the_end_follows(tmp_path) -> None:
    model, opt = tiny()
    path = tmp_path / "run.jsonl"
    # Every step fully measured: a last step over the measurement budget is written as a
    # summary instead (test_stats.py, test_the_last_step_written_at_close_...).
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=60, measure_budget=None) as mon:
        for _ in range(5):
            loss = model(torch.randn(6, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        mon.evaluation(loss=0.3, accuracy=0.9, samples=10)
    records = read_records(path)
    assert [r["kind"] for r in records] == ["header", "snapshot", "evaluation", "snapshot", "end"]
    assert [s["step"] for s in of_kind(records, "snapshot")] == [1, 5]
    assert "batch_mean" in records[3]["layers"][0]
    assert records[2]["running_stats"] == {"loss": 0.3, "accuracy": 0.9}
    assert math.isnan(records[2]["batch_stats"]["loss"])
    assert records[-1]["reason"] == "completed" and records[-1]["step"] == 5


class SlowOutput:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.release = threading.Event()

    def write_line(self, line: str) -> None:
        self.release.wait(10)
        self.lines.append(line)

    def close(self) -> None:
        pass


def test_a_slow_output_drops_snapshots_never_other_records_and_never_blocks() -> None:
    out = SlowOutput()
    writer = Writer([out], build_snapshot=lambda data: f"snapshot {data}\n", max_snapshots=4)
    start = time.monotonic()
    kept = [writer.snapshot(i) for i in range(50)]  # type: ignore[arg-type]
    for i in range(20):
        writer.record({"kind": "marker", "step": i, "marker": "epoch", "label": f"epoch {i}"})
    assert time.monotonic() - start < 0.5, "queuing never waits for the output"
    assert sum(kept) <= 5 and writer.dropped >= 45
    out.release.set()
    writer.close()
    markers = [line for line in out.lines if '"marker"' in line]
    assert len(markers) == 20


def test_measurement_runs_on_one_thread_and_training_keeps_its_threads(tmp_path, monkeypatch) -> None:
    """The hooks' reductions (memory-bound) run on the training thread alone; the forward, the
    backward and the optimizer's own update keep the intra-op threads the user set."""
    from bntop_torch import stats

    seen: dict[str, list[int]] = {}

    def note(name: str):
        def record(*_args, **_kwargs) -> None:
            seen.setdefault(name, []).append(torch.get_num_threads())

        return record

    def counted(name: str, fn):
        def wrapped(*args, **kwargs):
            note(name)()
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(stats, "relu_sums", counted("relu", stats.relu_sums))
    monkeypatch.setattr(stats, "row_dot", counted("weights", stats.row_dot))
    model, opt = tiny()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with bntop_torch.watch(model, opt, record=tmp_path / "run.jsonl", measure_budget=None):
            # Registered after bntop's own hooks, so they run right after them.
            model[1].register_forward_hook(note("after bn"))
            model[2].register_forward_hook(note("after relu"))
            opt.register_step_pre_hook(note("step"))
            opt.register_step_post_hook(note("after step"))
            for _ in range(3):
                loss = model(torch.randn(6, 4)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    assert seen["relu"] == [1] * 3 and seen["weights"] and set(seen["weights"]) == {1}
    for name in ("after bn", "after relu", "step", "after step"):
        assert seen[name] == [2] * 3, name


def test_watching_keeps_no_activation_alive_past_the_forward(tmp_path) -> None:
    """A BN output that only feeds an addition is not saved for the backward: torch frees it
    during the forward, and watching must not keep it (or any other activation) longer."""
    import weakref

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    outputs: list[weakref.ref] = []
    with bntop_torch.watch(model, opt, record=tmp_path / "run.jsonl"):
        model[1].register_forward_hook(lambda m, a, out: outputs.append(weakref.ref(out)))
        for _ in range(2):
            loss = (model(torch.randn(2, 3, 6, 6)) + 1).pow(2).mean()
            assert outputs[-1]() is None, "the BN output outlived the forward"
            opt.zero_grad()
            loss.backward()
            opt.step()


def test_the_writer_gets_a_step_when_the_next_forward_ends(tmp_path, monkeypatch) -> None:
    """The snapshot waiting for a loss logged after its step is handed to the writer thread when
    the next training forward returns, not when it starts: the writer then encodes while
    training is in the backward (no Python there), not while the forward's hooks need the GIL."""
    handed: list[int] = []
    real = Writer.snapshot

    def snapshot(self, data):
        handed.append(data.step)
        return real(self, data)

    monkeypatch.setattr(Writer, "snapshot", snapshot)
    model, opt = tiny()
    during: list[list[int]] = []
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=0) as mon:
        model[1].register_forward_hook(lambda *_: during.append(list(handed)))
        for i in range(3):
            loss = model(torch.randn(6, 4)).pow(2).mean()
            assert handed == list(range(1, i + 1)), "the previous step went to the writer at the forward's end"
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(loss=float(i))
    assert during == [[], [], [1]], "nothing was handed over while the forward ran"
    assert [s["loss"] for s in of_kind(read_records(path), "snapshot")] == [0.0, 1.0, 2.0]


class PolicyOutput(SlowOutput):
    """Notes the writer thread's scheduling policy at each line it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.policies: list[int] = []
        self.writing = threading.Event()

    def write_line(self, line: str) -> None:
        self.policies.append(os.sched_getscheduler(0))
        self.writing.set()
        super().write_line(line)


@pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE") or os.geteuid() != 0, reason="leaving SCHED_IDLE takes root on Linux"
)
def test_the_writer_yields_to_training_until_it_falls_behind() -> None:
    """SCHED_IDLE while it keeps up; normal policy (niced) while snapshots pile up, so that none
    is dropped for lack of CPU; SCHED_IDLE again once it has caught up."""
    out = PolicyOutput()
    writer = Writer([out], lambda data: f"{data}\n", max_snapshots=8)
    try:
        writer.record({"kind": "marker"})  # written while nothing waits; blocks the writer
        assert out.writing.wait(10)
        for _ in range(6):
            writer.snapshot("s")  # type: ignore[arg-type]
        out.release.set()
        assert writer.flush(10)
    finally:
        out.release.set()
        writer.close()
    idle, normal = os.SCHED_IDLE, os.SCHED_OTHER
    # Taken with 5, 4, 3, 2 snapshots still waiting (>= 8 // 4: behind), then 1 and 0.
    assert out.policies == [idle, normal, normal, normal, normal, idle, idle]
