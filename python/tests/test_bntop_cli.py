"""A recording of a ResNet-shaped PyTorch run, read back by the real bntop binary."""
from __future__ import annotations

import csv
import io
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import bntop_torch
from helpers import Pane, ResNet, of_kind, read_records, require_bntop

STEPS = 6


@pytest.fixture(scope="module")
def resnet_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = ResNet(width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    path = tmp_path_factory.mktemp("rec") / "resnet.jsonl"
    with bntop_torch.watch(model, opt, record=path, arrays_interval_s=0) as mon:
        mon.epoch()
        for i in range(STEPS):
            if i == 3:
                mon.epoch()
            x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(loss=loss.item(), accuracy=0.25)
        mon.evaluation(loss=2.3, accuracy=0.1, samples=16)
    return path


def test_the_recording_has_resnet18s_twenty_layers(resnet_recording: Path) -> None:
    records = read_records(resnet_recording)
    header = records[0]
    names = [layer["name"] for layer in header["layers"]]
    assert len(names) == 20 and names[:3] == ["bn1", "layer1.0.bn1", "layer1.0.bn2"]
    assert "layer2.0.downsample.1" in names
    feeds = {layer["name"]: layer.get("feeds_from") for layer in header["layers"]}
    assert feeds["layer3.1.bn2"] == "layer3.1.conv2" and feeds["layer2.0.downsample.1"] == "layer2.0.downsample.0"
    assert header["producer"]["model"] == "ResNet" and header["producer"]["world_size"] == 1
    snap = of_kind(records, "snapshot")[0]
    by_name = dict(zip(names, snap["layers"]))
    # bn1 of a block feeds its ReLU; bn2 feeds the residual sum, which no ReLU sees directly.
    assert "relu_active" in by_name["layer1.0.bn1"] and "relu_active" not in by_name["layer1.0.bn2"]
    assert records[-1]["kind"] == "end" and records[-1]["step"] == STEPS


def test_bntop_export_reads_it_back(resnet_recording: Path) -> None:
    binary = require_bntop()
    out = subprocess.run([binary, "export", str(resnet_recording), "--csv"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "bad line" not in out.stderr, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    records = read_records(resnet_recording)
    snaps = of_kind(records, "snapshot")
    names = [layer["name"] for layer in records[0]["layers"]]
    assert len(rows) == len(snaps) * 20
    assert [r["layer"] for r in rows[:20]] == names
    for row, (snap, layer) in zip(rows, ((s, layer) for s in snaps for layer in s["layers"])):
        assert int(row["step"]) == snap["step"]
        assert float(row["loss"]) == pytest.approx(snap["loss"], rel=1e-6)
        assert row["mode"] == layer["mode"]
        assert float(row["D"]) == pytest.approx(layer["summary"]["drift"], rel=1e-6)
        relu = float(row["relu_active"])
        assert (math.isnan(relu) and math.isnan(layer["summary"]["relu_active"])) or relu == pytest.approx(
            layer["summary"]["relu_active"], rel=1e-6
        )
    # A layer filtered by name works too.
    one = subprocess.run(
        [binary, "export", str(resnet_recording), "--csv", "--layer", "layer3.1.bn2"], capture_output=True, text=True, timeout=60
    )
    assert one.returncode == 0, one.stderr
    assert {r["layer"] for r in csv.DictReader(io.StringIO(one.stdout))} == {"layer3.1.bn2"}


def test_bntop_replay_shows_the_layers_in_tmux(resnet_recording: Path, tmp_path: Path) -> None:
    binary = require_bntop()
    if shutil.which("tmux") is None:
        pytest.skip("tmux is missing (apt-get install -y tmux)")
    pane = Pane(tmp_path, [binary, "replay", str(resnet_recording)])
    try:
        # The layers table: one row per BN layer, named as in model.named_modules(). At 120x40 it
        # scrolls: the first rows show, and the border says which of the 20.
        screen = pane.wait_for(lambda s: "layer1.0.bn1" in s and "TRAIN" in s)
        rows = [line for line in screen.splitlines() if "TRAIN" in line]
        assert any(re.search(r"[ ▶]bn1 ", row) for row in rows), screen
        assert any("layer1.0.bn2" in row for row in rows), screen
        assert "of 20" in screen, screen
        # Walking down the table reaches the last stage, the table scrolling along.
        for _ in range(19):
            pane.tmux("send-keys", "j")
        screen = pane.wait_for(lambda s: "layer4.1.bn2" in s)
        rows = [line for line in screen.splitlines() if "TRAIN" in line]
        assert any("layer4.1.bn2" in row for row in rows), screen
        assert not any("layer1.0.bn1" in row for row in rows), screen
        pane.tmux("send-keys", "q")
    finally:
        pane.kill()
