"""Controls applied through the in-process API (the same path serve's controls take)."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

import bntop_torch
from helpers import of_kind, read_records


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )


def train_step(model: nn.Module, opt: torch.optim.Optimizer, i: int) -> None:
    g = torch.Generator().manual_seed(i)
    x = torch.randn(8, 3, 6, 6, generator=g) + 1.0
    loss = nn.functional.cross_entropy(model(x), torch.arange(8) % 3)
    opt.zero_grad()
    loss.backward()
    opt.step()


def controls(records: list[dict]) -> list[dict]:
    return of_kind(records, "control")


def test_momentum_lr_and_reset_take_effect_after_the_step_they_are_echoed_with(tmp_path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=0) as mon:
        train_step(model, opt, 0)
        mon.control({"control": "set_momentum", "layer": 1, "momentum": 0.5})
        mon.control({"control": "set_lr", "lr": 0.025})
        train_step(model, opt, 1)  # applied after step 2
        assert model[4].momentum == 0.5 and model[1].momentum == 0.1
        assert all(g["lr"] == 0.025 for g in opt.param_groups)
        before = model[4].running_mean.clone()
        train_step(model, opt, 2)
        mon.control({"control": "set_momentum_cumulative", "layer": None})
        mon.control({"control": "reset_running_stats", "layer": 0})
        mon.control({"control": "set_momentum", "layer": 7, "momentum": 0.5})
        mon.control({"control": "set_momentum", "layer": 0, "momentum": 1.5})
        mon.control({"control": "set_data_order", "order": "clips"})
        mon.control({"control": "precise_bn"})
        train_step(model, opt, 3)
        assert model[1].momentum is None and model[4].momentum is None
        assert torch.equal(model[1].running_mean, torch.zeros(4))
        assert torch.equal(model[1].running_var, torch.ones(4))
    records = read_records(path)
    snaps = {s["step"]: s for s in of_kind(records, "snapshot")}
    # Step 3 ran with momentum 0.5 in layer 1: running <- 0.5 running + 0.5 batch.
    layer = snaps[3]["layers"][1]
    want = 0.5 * before + 0.5 * torch.tensor(layer["batch_mean"])
    torch.testing.assert_close(torch.tensor(layer["running_mean_post"]), want)
    assert layer["momentum"] == 0.5 and snaps[3]["lr"] == 0.025
    echoed = [(c["step"], c["control"]["control"], c.get("rejected")) for c in controls(records)]
    assert echoed[:3] == [(2, "set_momentum", None), (2, "set_lr", None), (4, "set_momentum_cumulative", None)]
    assert echoed[3] == (4, "reset_running_stats", None)
    assert echoed[4][2] == "no BN layer 7 (layers are 0..1)"
    assert "momentum must be in [0, 1]" in echoed[5][2]
    assert echoed[6][1] == "set_data_order" and "cannot reorder" in echoed[6][2]
    assert echoed[7][1] == "precise_bn" and "precise_loader" in echoed[7][2]
    supported = records[0]["producer"]["controls"]
    assert "set_data_order" not in supported and "precise_bn" not in supported
    assert "set_momentum_cumulative" in supported


def test_eval_mode_survives_model_train_every_epoch(tmp_path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=0) as mon:
        train_step(model, opt, 0)
        mon.control({"control": "set_mode", "layer": 0, "mode": "eval"})
        train_step(model, opt, 1)
        frozen = model[1].running_mean.clone()
        for epoch in range(3):
            model.train()  # what every training loop does at each epoch
            mon.epoch()
            train_step(model, opt, 2 + epoch)
            assert not model[1].training and model[4].training
            # Eval mode: normalised by running statistics, which do not move.
            assert torch.equal(model[1].running_mean, frozen)
            with torch.no_grad():
                model.eval()
                model(torch.randn(4, 3, 6, 6))
        model.train()
        mon.control({"control": "set_mode", "layer": None, "mode": "train"})
        train_step(model, opt, 9)
        train_step(model, opt, 10)
        assert model[1].training and not torch.equal(model[1].running_mean, frozen)
    snaps = of_kind(read_records(path), "snapshot")
    modes = [s["layers"][0]["mode"] for s in snaps]
    # A control queued between steps is applied after the next one (in its step hook).
    assert modes == ["train", "train", "eval", "eval", "eval", "eval", "train"]
    assert [s["layers"][1]["mode"] for s in snaps] == ["train"] * len(snaps)
    eval_layer = snaps[3]["layers"][0]
    assert eval_layer["running_mean_pre"] == eval_layer["running_mean_post"]


def test_pause_blocks_the_loop_until_step_or_resume(tmp_path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    done: list[int] = []
    mon = bntop_torch.watch(model, opt, record=tmp_path / "run.jsonl")

    def loop() -> None:
        for i in range(5):
            train_step(model, opt, i)
            done.append(i)

    mon.control({"control": "pause"})
    trainer = threading.Thread(target=loop)
    trainer.start()
    time.sleep(0.5)
    assert len(done) == 0 and mon.step == 1, "paused after the first step, inside optimizer.step()"
    mon.control({"control": "step"})
    time.sleep(0.5)
    assert len(done) == 1 and mon.step == 2, "exactly one more step"
    mon.control({"control": "resume"})
    trainer.join(10)
    assert not trainer.is_alive() and len(done) == 5
    mon.close()
    echoed = [(c["step"], c["control"]["control"]) for c in controls(read_records(tmp_path / "run.jsonl"))]
    assert echoed == [(1, "pause"), (1, "step"), (2, "resume")]


def test_quit_raises_stop_training_and_ends_with_quit(tmp_path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with pytest.raises(bntop_torch.StopTraining):
        with bntop_torch.watch(model, opt, record=path) as mon:
            train_step(model, opt, 0)
            mon.control({"control": "quit"})
            train_step(model, opt, 1)
            train_step(model, opt, 2)
    records = read_records(path)
    assert records[-1]["kind"] == "end" and records[-1]["reason"] == "quit" and records[-1]["step"] == 2


def test_precise_bn_reports_population_statistics_and_apply_writes_them(tmp_path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(5)
    loader = [(torch.randn(8, 3, 6, 6, generator=g) * 2 + 1, torch.zeros(8)) for _ in range(4)]
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, precise_loader=loader) as mon:
        train_step(model, opt, 0)
        saved = model[1].running_mean.clone(), model[1].running_var.clone()
        mon.control({"control": "precise_bn"})
        train_step(model, opt, 1)
        # Reporting alone changes nothing (the update of step 2 is the only change).
        stats_after_2 = model[1].running_mean.clone()
        mon.control({"control": "apply_precise_bn", "layer": 0})
        train_step(model, opt, 2)
    # The direct computation: layer 0's input is conv0(x) for every loader batch.
    with torch.no_grad():
        means = torch.stack([model[0](x).mean(dim=(0, 2, 3)) for x, _ in loader])
    records = read_records(path)
    pops = of_kind(records, "population")
    assert [p["step"] for p in pops] == [2, 3]
    assert pops[0]["samples"] == 32 and pops[0]["order_batches"] == 4
    assert not torch.equal(saved[0], stats_after_2)
    layer0 = pops[1]["layers"][0]
    assert len(layer0["mean"]) == 4 and 0.0 < layer0["var_ratio"] <= 1.0
    assert "precise_bn" in records[0]["producer"]["controls"]
    # The population of step 3 was computed with the weights the model still has.
    torch.testing.assert_close(torch.tensor(layer0["mean"]), means.mean(0), rtol=1e-4, atol=1e-5)
    # apply_precise_bn wrote it into layer 0's running statistics (variance Bessel-corrected over
    # the 8*6*6 values per channel of a batch), and left layer 1 alone.
    torch.testing.assert_close(model[1].running_mean, torch.tensor(layer0["mean"]), rtol=1e-5, atol=1e-6)
    n = 8 * 6 * 6
    torch.testing.assert_close(model[1].running_var, torch.tensor(layer0["var"]) * n / (n - 1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(model[4].running_mean, torch.tensor(pops[1]["layers"][1]["mean"]))


def test_checkpoint_controls_are_refused_with_a_reason_and_echoed(tmp_path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0) as mon:
        train_step(model, opt, 0)
        weights = [p.detach().clone() for p in model.parameters()]
        mon.control({"control": "save_checkpoint"})
        mon.control({"control": "restore_checkpoint"})
        mon.control({"control": "restart"})
        train_step(model, opt, 1)
    records = read_records(path)
    echoed = [(c["step"], c["control"]["control"], c.get("rejected")) for c in controls(records)]
    # Applied (here: refused) between steps, after the step that follows the request.
    assert [(step, name) for step, name, _ in echoed] == [
        (2, "save_checkpoint"), (2, "restore_checkpoint"), (2, "restart")
    ]
    assert all("not supported by bntop-torch" in why for _, _, why in echoed)
    # Nothing went back: the steps went on, and so did the weights.
    assert [s["step"] for s in of_kind(records, "snapshot")] == [1, 2]
    assert any(not torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    supported = records[0]["producer"]["controls"]
    assert not {"save_checkpoint", "restore_checkpoint", "restart"} & set(supported)
