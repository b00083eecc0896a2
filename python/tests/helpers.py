"""Shared test helpers: reading a recording back, and finding the real bntop binary."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch

REPO = Path(__file__).resolve().parents[2]


def _floats(value: Any) -> Any:
    if isinstance(value, str) and value in ("NaN", "inf", "-inf"):
        return float({"NaN": "nan"}.get(value, value))
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value


def read_records(path: os.PathLike[str] | str) -> list[dict[str, Any]]:
    """Every line of a session file, with bntop's "NaN"/"inf" strings as floats."""
    with open(path) as f:
        return [_floats(json.loads(line)) for line in f]


def of_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind]


def bntop_binary() -> Optional[str]:
    """$BNTOP_BIN, else the newer of this checkout's target/{release,debug}/bntop, else PATH."""
    env = os.environ.get("BNTOP_BIN")
    if env:
        return env
    built = [REPO / "target" / profile / "bntop" for profile in ("release", "debug")]
    built = [b for b in built if b.is_file()]
    if built:
        return str(max(built, key=lambda b: b.stat().st_mtime))
    return shutil.which("bntop")


def assert_close(actual: Any, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6, what: str = "") -> None:
    got = torch.tensor(actual, dtype=torch.float64)
    want = expected.detach().double().cpu().reshape(-1)
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}")


# The benchmark's ResNet (python/benchmarks/resnet.py), for the tests that need a real network.
sys.path.insert(0, str(REPO / "python" / "benchmarks"))
from resnet import ResNet  # noqa: E402


def nan_list(n: int) -> list[float]:
    return [math.nan] * n


def require_bntop() -> str:
    import pytest

    binary = bntop_binary()
    if binary is None or not os.path.isfile(binary):
        pytest.skip(
            "the bntop binary is missing: run `cargo build --locked` in the repository "
            "(or set BNTOP_BIN)"
        )
    return binary


class Pane:
    """A tmux server of its own (socket in `directory`) with one 120x40 pane; kill() ends it."""

    def __init__(self, directory: Path, command: list[str]):
        import shlex
        import subprocess

        self.socket = str(directory / "tmux.sock")
        self._run = subprocess.run
        self.tmux(
            "new-session", "-d", "-x", "120", "-y", "40", "env", "TERM=xterm-256color",
            "sh", "-c", shlex.join(command) + "; sleep 600",
        )

    def tmux(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        out = self._run(["tmux", "-f", "/dev/null", "-S", self.socket, *args], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"tmux {args}: {out.stderr}")
        return out.stdout

    def wait_for(self, ready: "Callable[[str], bool]", limit: float = 20.0) -> str:
        import time

        deadline = time.monotonic() + limit
        while True:
            screen = self.tmux("capture-pane", "-p")
            if ready(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"not on screen within {limit} s:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        try:
            self.tmux("kill-server")
        except RuntimeError:
            pass
