"""Controls sent through `bntop serve --source -` over its Unix socket reach the PyTorch model."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

import bntop_torch
from helpers import of_kind, read_records, require_bntop


def serve_has_source(binary: str) -> bool:
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=30)
    return "--source" in out.stdout


class Viewer:
    """A viewer speaking serve's socket protocol: a hello line, then records come and controls go."""

    def __init__(self, path: Path, deadline: float = 20.0):
        end = time.monotonic() + deadline
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        self.sock.sendall(b'{"hello":{"token":null,"readonly":false}}\n')
        self.reader = self.sock.makefile("r")
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.reader:
            with self._lock:
                self.records.append(json.loads(line))

    def send(self, control: dict[str, Any]) -> None:
        self.sock.sendall((json.dumps(control) + "\n").encode())

    def wait_for(self, what: str, found: Callable[[dict[str, Any]], bool], limit: float = 20.0) -> dict[str, Any]:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            with self._lock:
                for r in self.records:
                    if found(r):
                        return r
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {limit} s; got kinds {[r['kind'] for r in self.records][-20:]}")

    def echo(self, name: str, after: int = 0) -> dict[str, Any]:
        return self.wait_for(
            f"echo of {name}",
            lambda r: r["kind"] == "control" and r["control"]["control"] == name and r["step"] >= after,
        )

    def close(self) -> None:
        self.sock.close()


class Loop:
    """A training loop on its own thread that calls model.train() at each "epoch" (3 steps) and
    notes each step's BN settings."""

    def __init__(self, model: nn.Sequential, opt: torch.optim.Optimizer, mon: bntop_torch.Monitor):
        self.model, self.opt, self.mon = model, opt, mon
        self.steps: list[tuple[bool, float]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                if i % 3 == 0:
                    self.model.train()
                    self.mon.epoch()
                x = torch.randn(8, 3, 6, 6) + 1
                loss = nn.functional.cross_entropy(self.model(x), torch.arange(8) % 3)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                self.mon.log(loss=loss.item())
                self.steps.append((self.model[1].training, self.model[4].momentum))
                i += 1
                time.sleep(0.01)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def wait_steps(self, n: int, limit: float = 20.0) -> None:
        end = time.monotonic() + limit
        while len(self.steps) < n:
            assert time.monotonic() < end, f"only {len(self.steps)} steps"
            time.sleep(0.01)


def test_controls_over_the_socket_reach_the_model(tmp_path: Path) -> None:
    binary = require_bntop()
    if not serve_has_source(binary):
        pytest.skip(f"{binary} has no `serve --source` yet")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sock = tmp_path / "bntop.sock"
    mon = bntop_torch.watch(model, opt, serve=True, bntop=binary, socket=sock, record=tmp_path / "run.jsonl")
    loop = Loop(model, opt, mon)
    viewer = Viewer(sock)
    try:
        header = viewer.wait_for("header", lambda r: r["kind"] == "header")
        assert header["producer"]["name"] == "bntop-torch"
        assert [layer["name"] for layer in header["layers"]] == ["1", "4"]

        viewer.send({"control": "set_momentum", "layer": 1, "momentum": 0.5})
        echo = viewer.echo("set_momentum")
        assert "rejected" not in echo
        # loop.steps[k] is noted after step k + 1; the control took effect after step S.
        loop.wait_steps(echo["step"] + 1)
        assert [m for _, m in loop.steps[: echo["step"] - 1]] == [0.1] * (echo["step"] - 1)
        assert [m for _, m in loop.steps[echo["step"] - 1 :]] == [0.5] * (len(loop.steps) - echo["step"] + 1)
        assert model[4].momentum == 0.5

        viewer.send({"control": "set_mode", "layer": 0, "mode": "eval"})
        echo = viewer.echo("set_mode")
        loop.wait_steps(echo["step"] + 7)  # through at least two model.train() calls
        assert loop.steps[echo["step"] - 2][0] is True
        assert [training for training, _ in loop.steps[echo["step"] - 1 :]] == [False] * (len(loop.steps) - echo["step"] + 1)
        snap = viewer.wait_for("an eval snapshot", lambda r: r["kind"] == "snapshot" and r["step"] > echo["step"] + 3)
        assert snap["layers"][0]["mode"] == "eval" and snap["layers"][1]["mode"] == "train"

        viewer.send({"control": "pause"})
        echo = viewer.echo("pause")
        paused_at = echo["step"]
        time.sleep(1.0)
        # Blocked inside optimizer.step() of step S: that step's entry is not noted yet.
        assert mon.step == paused_at and len(loop.steps) == paused_at - 1, "pause blocks the loop"
        viewer.send({"control": "step"})
        viewer.echo("step", after=paused_at)
        time.sleep(1.0)
        assert mon.step == paused_at + 1 and len(loop.steps) == paused_at, "step = exactly one more optimizer step"
        viewer.send({"control": "resume"})
        viewer.echo("resume")
        loop.wait_steps(paused_at + 4)

        # Not in the header's controls: serve refuses it itself, naming the producer.
        viewer.send({"control": "set_data_order", "order": "clips"})
        assert "bntop-torch does not handle" in viewer.echo("set_data_order").get("rejected", "")
    finally:
        loop.stop.set()
        loop.thread.join(30)
        mon.close()
        viewer.close()
    assert loop.error is None, loop.error
    assert mon.serve is not None and mon.serve.process.returncode == 0
    records = read_records(tmp_path / "run.jsonl")
    names = [c["control"]["control"] for c in of_kind(records, "control")]
    assert names == ["set_momentum", "set_mode", "pause", "step", "resume"]
    assert records[-1]["kind"] == "end"


def test_serve_without_the_binary_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BNTOP_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(bntop_torch.BntopNotFound, match=r"cargo install --path \."):
        bntop_torch.watch(model, opt, serve=True)
    monkeypatch.setenv("BNTOP_BIN", str(tmp_path / "nope"))
    with pytest.raises(bntop_torch.BntopNotFound, match="BNTOP_BIN"):
        bntop_torch.watch(model, opt, serve=True, record=tmp_path / "run.jsonl")
    assert not (tmp_path / "run.jsonl").exists()
    # The hooks of the failed watch() are not left behind.
    assert not model[1]._forward_pre_hooks and not opt._optimizer_step_pre_hooks
