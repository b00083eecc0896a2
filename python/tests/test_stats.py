"""Streamed statistics equal torch's own computation on fixed batches, to f32 rounding."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
from torch import nn

import bntop_torch
from helpers import assert_close, of_kind, read_records


@dataclass
class Truth:
    """One BN layer's step, as the test sees it with plain torch."""

    bn: nn.BatchNorm2d
    feeder: Optional[nn.Module]
    relu: bool
    x: list[torch.Tensor] = field(default_factory=list)
    y: list[torch.Tensor] = field(default_factory=list)
    rm_pre: list[torch.Tensor] = field(default_factory=list)
    rv_pre: list[torch.Tensor] = field(default_factory=list)
    rm_post: list[torch.Tensor] = field(default_factory=list)
    rv_post: list[torch.Tensor] = field(default_factory=list)
    gamma: list[torch.Tensor] = field(default_factory=list)
    beta: list[torch.Tensor] = field(default_factory=list)
    grad_gamma: list[torch.Tensor] = field(default_factory=list)
    grad_beta: list[torch.Tensor] = field(default_factory=list)
    w_before: list[torch.Tensor] = field(default_factory=list)
    w_after: list[torch.Tensor] = field(default_factory=list)
    w_grad: list[torch.Tensor] = field(default_factory=list)
    mode_train: list[bool] = field(default_factory=list)

    def hook(self) -> None:
        def pre(m: nn.Module, args: tuple[torch.Tensor]) -> None:
            if torch.is_grad_enabled():
                self.x.append(args[0].detach().double().clone())
                self.rm_pre.append(m.running_mean.detach().double().clone())
                self.rv_pre.append(m.running_var.detach().double().clone())
                self.mode_train.append(m.training)

        def post(m: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
            if torch.is_grad_enabled():
                self.y.append(out.detach().double().clone())

        self.bn.register_forward_pre_hook(pre)
        self.bn.register_forward_hook(post)

    def before_step(self) -> None:
        bn = self.bn
        self.rm_post.append(bn.running_mean.detach().double().clone())
        self.rv_post.append(bn.running_var.detach().double().clone())
        self.gamma.append(bn.weight.detach().double().clone())
        self.beta.append(bn.bias.detach().double().clone())
        self.grad_gamma.append(bn.weight.grad.detach().double().clone())
        self.grad_beta.append(bn.bias.grad.detach().double().clone())
        if self.feeder is not None:
            self.w_before.append(self.feeder.weight.detach().double().clone())
            self.w_grad.append(self.feeder.weight.grad.detach().double().clone())

    def after_step(self) -> None:
        if self.feeder is not None:
            self.w_after.append(self.feeder.weight.detach().double().clone())


def dims(x: torch.Tensor) -> list[int]:
    return [0] + list(range(2, x.dim()))


def row_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The angle between rows, as bntop's metrics::weights::angle: 2 atan2(|â - b̂|, |â + b̂|)."""
    a, b = a.flatten(1), b.flatten(1)
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    return 2 * torch.atan2((a - b).norm(dim=1), (a + b).norm(dim=1))


def check_layer(layer: dict, t: Truth, i: int, eps: float) -> None:
    """Every per-channel array and summary value of snapshot layer `layer` against step i."""
    x, y = t.x[i], t.y[i]
    var, mean = torch.var_mean(x, dim=dims(x), correction=0)
    assert_close(layer["batch_mean"], mean, what="batch_mean")
    assert_close(layer["batch_var"], var, what="batch_var")
    for name, want in (
        ("running_mean_pre", t.rm_pre[i]),
        ("running_var_pre", t.rv_pre[i]),
        ("running_mean_post", t.rm_post[i]),
        ("running_var_post", t.rv_post[i]),
        ("gamma", t.gamma[i]),
        ("beta", t.beta[i]),
        ("grad_gamma", t.grad_gamma[i]),
        ("grad_beta", t.grad_beta[i]),
    ):
        assert_close(layer[name], want, what=name)
    sr = (t.rv_pre[i] + eps).sqrt()
    r = (var + eps).sqrt() / sr
    d = (mean - t.rm_pre[i]) / sr
    big_d = (d**2 + (r - 1) ** 2).sqrt()
    assert_close(layer["r"], r, what="r")
    assert_close(layer["d"], d, rtol=1e-4, atol=1e-6, what="d")
    assert_close(layer["drift"], big_d, rtol=1e-4, what="drift")
    out_var, out_mean = torch.var_mean(y, dim=dims(y), correction=0)
    assert_close(layer["out_mean"], out_mean, rtol=1e-4, atol=1e-5, what="out_mean")
    assert_close(layer["out_var"], out_var, rtol=1e-4, atol=1e-5, what="out_var")
    s = layer["summary"]
    assert s["drift"] == pytest.approx(big_d.pow(2).mean().sqrt().item(), rel=1e-4)
    assert s["r_min"] == pytest.approx(r.min().item(), rel=1e-5)
    assert s["r_max"] == pytest.approx(r.max().item(), rel=1e-5)
    assert s["r_mean"] == pytest.approx(r.mean().item(), rel=1e-5)
    assert s["d_max_abs"] == pytest.approx(d.abs().max().item(), rel=1e-4, abs=1e-6)
    if t.relu:
        relu = y.clamp(min=0)
        rv, rm = torch.var_mean(relu, dim=dims(relu), correction=0)
        active = (relu > 0).double().mean(dim=dims(relu))
        assert_close(layer["relu_mean"], rm, what="relu_mean")
        assert_close(layer["relu_var"], rv, what="relu_var")
        assert_close(layer["relu_active"], active, what="relu_active")
        assert s["relu_active"] == pytest.approx(active.mean().item(), rel=1e-6)
    else:
        assert "relu_active" not in layer and math.isnan(s["relu_active"])
    if t.feeder is not None:
        wb, wa, g = t.w_before[i], t.w_after[i], t.w_grad[i]
        norms = wa.flatten(1).norm(dim=1)
        # bntop's convention: a zero vector has no direction, cos = 0.
        cos = ((wb.flatten(1) * g.flatten(1)).sum(1) / (wb.flatten(1).norm(dim=1) * g.flatten(1).norm(dim=1))).nan_to_num(0.0)
        angle = row_angle(wb, wa)
        step = (wa - wb).flatten(1)
        radial = ((wb.flatten(1) * step).sum(1) / (wb.flatten(1).norm(dim=1) * step.norm(dim=1))).nan_to_num(0.0)
        assert_close(layer["weight_norm"], norms, what="weight_norm")
        # cos(w, g) is tiny under BN (scale invariance up to eps): compare on the scale of 1.
        assert_close(layer["weight_grad_cos"], cos, rtol=1e-3, atol=1e-6, what="weight_grad_cos")
        assert_close(layer["angular_update"], angle, rtol=1e-4, atol=1e-7, what="angular_update")
        assert_close(layer["weight_grad_norm"], g.flatten(1).norm(dim=1), what="weight_grad_norm")
        assert s["weight_norm"] == pytest.approx(wa.norm().item(), rel=1e-5)
        assert s["angular_update"] == pytest.approx(angle.pow(2).mean().sqrt().item(), rel=1e-4)
        assert s["max_abs_cos"] == pytest.approx(cos.abs().max().item(), rel=1e-3, abs=1e-6)
        assert s["radial_fraction"] == pytest.approx(radial.mean().item(), rel=1e-3, abs=1e-5)
    else:
        for name in ("weight_norm", "angular_update", "weight_grad_cos", "weight_grad_norm"):
            assert name not in layer
        for name in ("weight_norm", "angular_update", "max_abs_cos", "effective_lr", "radial_fraction"):
            assert math.isnan(s[name]), name


def run_checked(
    tmp_path,
    model: nn.Module,
    truths: list[Truth],
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int = 3,
    lr: float = 0.5,
    frozen: tuple[nn.Module, ...] = (),
    optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
    weights_copied: Optional[bool] = None,
) -> list[dict]:
    if optimizer is None:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    else:
        opt = optimizer(model.parameters())
    path = tmp_path / "run.jsonl"
    for t in truths:
        t.hook()
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=0) as mon:
        for i in range(steps):
            for m in frozen:  # BN layers the script keeps in eval mode (frozen statistics)
                m.eval()
            x, target = batch(i)
            loss = loss_fn(model(x), target)
            opt.zero_grad()
            loss.backward()
            mon.log(loss=loss.item())
            for t in truths:
                t.before_step()
            opt.step()
            for t in truths:
                t.after_step()
            if weights_copied is not None:
                # Plain SGD's step is read from its own vectors, not from a copy of the weights.
                assert bool(mon._measure._buffers) == weights_copied
            # An evaluation under no_grad between steps must not disturb the statistics.
            with torch.no_grad():
                model.eval()
                model(batch(100 + i)[0])
                model.train()
    records = read_records(path)
    snapshots = of_kind(records, "snapshot")
    assert [s["step"] for s in snapshots] == list(range(1, steps + 1))
    for i, snap in enumerate(snapshots):
        assert len(snap["layers"]) == len(truths)
        for layer, t in zip(snap["layers"], truths):
            assert layer["mode"] == ("train" if t.mode_train[i] else "eval")
            check_layer(layer, t, i, t.bn.eps)
    return records


def fixed(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_conv_bn2d_relu_and_a_bn_without_relu(tmp_path) -> None:
    torch.manual_seed(0)
    conv1, bn1 = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
    conv2, bn2 = nn.Conv2d(6, 5, 3, stride=2), nn.BatchNorm2d(5)
    model = nn.Sequential(conv1, bn1, nn.ReLU(), conv2, bn2, nn.Flatten(), nn.Linear(5 * 3 * 3, 4))
    truths = [Truth(bn1, conv1, True), Truth(bn2, conv2, False)]
    records = run_checked(
        tmp_path,
        model,
        truths,
        lambda i: (fixed(i, 8, 3, 7, 7) * 2 + 0.5, torch.arange(8) % 4),
        nn.functional.cross_entropy,
    )
    header = records[0]
    assert header["layers"][0] == {
        "name": "1", "channels": 6, "kind": "bn2d", "feeds_from": "0", "in_channels": 3, "kernel": 3,
        "stride": 1, "padding": 1, "conv_bias": False, "out_height": 7, "out_width": 7,
        "in_height": 7, "in_width": 7,
    }
    assert header["layers"][1]["feeds_from"] == "3" and header["layers"][1]["stride"] == 2
    assert header["config"]["batch_size"] == 8
    losses = [s["loss"] for s in of_kind(records, "snapshot")]
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize(
    "optimizer, weights_copied",
    [
        (lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, dampening=0.2, weight_decay=1e-2), False),
        (lambda p: torch.optim.SGD(p, lr=0.3, weight_decay=1e-2), False),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, weight_decay=1e-2, maximize=True), False),
        (lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=1e-2, maximize=True), False),
        (lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, nesterov=True), True),
        (lambda p: torch.optim.AdamW(p, lr=0.01), True),
    ],
    ids=["sgd-momentum", "sgd", "sgd-momentum-maximize", "sgd-maximize", "nesterov", "adamw"],
)
def test_the_weight_step_under_each_optimizer(tmp_path, optimizer, weights_copied: bool) -> None:
    """|w'|, the angular update and the radial part from the true w' - w, whether the step was read
    from SGD's own vectors or measured against a copy of w."""
    torch.manual_seed(6)
    conv, bn = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
    lin, bn1d = nn.Linear(6 * 25, 5), nn.BatchNorm1d(5)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), lin, bn1d)
    run_checked(
        tmp_path,
        model,
        [Truth(bn, conv, True), Truth(bn1d, lin, False)],
        lambda i: (fixed(i, 8, 3, 5, 5) * 2 + 0.5, fixed(40 + i, 8, 5)),
        nn.functional.mse_loss,
        steps=4,
        optimizer=optimizer,
        weights_copied=weights_copied,
    )


def test_bn1d_on_linear_and_on_conv1d_and_bn3d(tmp_path) -> None:
    torch.manual_seed(1)
    lin, bn_a = nn.Linear(10, 7), nn.BatchNorm1d(7)
    conv1d, bn_b = nn.Conv1d(7, 4, 3), nn.BatchNorm1d(4)
    conv3d, bn_c = nn.Conv3d(1, 3, 3, padding=1), nn.BatchNorm3d(3)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.bn_a, self.act = lin, bn_a, nn.ReLU()
            self.conv1d, self.bn_b = conv1d, bn_b
            self.conv3d, self.bn_c, self.act3 = conv3d, bn_c, nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.bn_a(self.lin(x)))  # (N, 7)
            h = self.bn_b(self.conv1d(h.unsqueeze(2).expand(-1, -1, 5).contiguous()))  # (N, 4, 3)
            v = self.act3(self.bn_c(self.conv3d(x[:, :8].reshape(-1, 1, 2, 2, 2))))  # (N, 3, 2, 2, 2)
            return h.flatten(1).sum(1, keepdim=True) + v.flatten(1).mean(1, keepdim=True)

    model = Net()
    truths = [Truth(bn_a, lin, True), Truth(bn_b, conv1d, False), Truth(bn_c, conv3d, True)]
    records = run_checked(
        tmp_path,
        model,
        truths,
        lambda i: (fixed(i, 12, 10), fixed(50 + i, 12, 1)),
        nn.functional.mse_loss,
        lr=0.05,
    )
    kinds = [(layer["name"], layer["kind"], layer.get("feeds_from")) for layer in records[0]["layers"]]
    assert kinds == [("bn_a", "bn1d", "lin"), ("bn_b", "bn1d", "conv1d"), ("bn_c", "bn3d", "conv3d")]


def test_a_conv_free_bn_reports_no_weight_metrics(tmp_path) -> None:
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(bn, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    records = run_checked(
        tmp_path,
        model,
        [Truth(bn, None, True)],
        lambda i: (fixed(i, 6, 3, 4, 4) * 3 - 1, fixed(9 + i, 6, 2)),
        nn.functional.mse_loss,
    )
    assert "feeds_from" not in records[0]["layers"][0]


def test_momentum_none_is_the_cumulative_average(tmp_path) -> None:
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=None)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 9, 1))
    records = run_checked(
        tmp_path,
        model,
        [Truth(bn, conv, True)],
        lambda i: (fixed(i, 5, 2, 3, 3), fixed(20 + i, 5, 1)),
        nn.functional.mse_loss,
        steps=4,
    )
    assert records[0]["config"]["bn_momentum"] != records[0]["config"]["bn_momentum"]  # NaN
    for k, snap in enumerate(of_kind(records, "snapshot"), start=1):
        layer = snap["layers"][0]
        assert layer["cumulative"] is True
        assert layer["momentum"] == pytest.approx(1 / k)


def test_a_layer_in_eval_mode_is_measured_against_its_running_statistics(tmp_path) -> None:
    torch.manual_seed(4)
    conv1, bn1 = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)
    conv2, bn2 = nn.Conv2d(5, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
    model = nn.Sequential(conv1, bn1, nn.ReLU(), conv2, bn2, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 25, 2))
    # Running statistics far from the batch's: large d and r, and a mean far from 0.
    bn1.running_mean.fill_(0.5)
    bn1.running_var.fill_(4.0)
    truths = [Truth(bn1, conv1, True), Truth(bn2, conv2, True)]
    records = run_checked(
        tmp_path,
        model,
        truths,
        lambda i: (fixed(i, 6, 3, 5, 5) + 3.0, torch.arange(6) % 2),
        nn.functional.cross_entropy,
        frozen=(bn1,),
    )
    for snap in of_kind(records, "snapshot"):
        layer = snap["layers"][0]
        assert layer["mode"] == "eval" and layer["running_mean_pre"] == layer["running_mean_post"]
        assert layer["summary"]["drift"] > 0.5


def test_without_weight_metrics_those_are_left_out(tmp_path) -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, arrays_interval_s=0, weight_metrics=False):
        for i in range(2):
            loss = model(fixed(i, 5, 3, 6, 6)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    records = read_records(path)
    assert records[0]["layers"][0]["feeds_from"] == "0"
    layer = of_kind(records, "snapshot")[0]["layers"][0]
    assert "weight_norm" not in layer and "batch_mean" in layer and "relu_active" in layer
    assert math.isnan(layer["summary"]["angular_update"]) and math.isnan(layer["summary"]["max_abs_cos"])


def test_snapshots_without_arrays_still_carry_the_relu_active_fraction(tmp_path) -> None:
    """Between array snapshots only the ReLU's sign pass runs; its layer summary stays exact
    (with no measurement budget: every step runs the optional passes)."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    active: list[float] = []
    model[2].register_forward_hook(lambda m, a, out: active.append((out > 0).double().mean().item()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=3600, measure_budget=None):
        for i in range(4):
            loss = model(fixed(i, 5, 3, 6, 6) + 0.3 * i).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    snaps = of_kind(read_records(path), "snapshot")
    assert [("relu_mean" in s["layers"][0]) for s in snaps] == [True, False, False, False]
    assert not any("partial" in s for s in snaps)
    for snap, want in zip(snaps, active, strict=True):
        assert snap["layers"][0]["summary"]["relu_active"] == pytest.approx(want, rel=1e-6)


def budgeted_run(path: Path, snapshot_interval_s: float) -> tuple[bntop_torch.Monitor, list[torch.Tensor]]:
    """Six steps of a small conv net under a tiny measurement budget: after the first two steps
    (no step time known yet) the optional passes cost far more than 1e-6 of the run, so only
    steps that keep their arrays (the first) run them. Returns the monitor and each step's BN
    input means."""
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    means: list[torch.Tensor] = []
    model[1].register_forward_pre_hook(lambda m, a: means.append(a[0].detach().mean((0, 2, 3))))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    budget = {"snapshot_interval_s": snapshot_interval_s, "arrays_interval_s": 3600, "measure_budget": 1e-6}
    with bntop_torch.watch(model, opt, record=path, **budget) as mon:
        for i in range(6):
            loss = model(fixed(i, 5, 3, 6, 6)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return mon, means


def test_steps_beyond_the_budget_are_marked_partial_and_leave_the_optional_numbers_out(tmp_path) -> None:
    """Under a measurement budget, a step that skips the weight and ReLU passes says so; its
    BatchNorm numbers are still there and exact, and the measured steps are complete."""
    path = tmp_path / "run.jsonl"
    mon, means = budgeted_run(path, snapshot_interval_s=0)
    snaps = of_kind(read_records(path), "snapshot")
    assert [s.get("partial", False) for s in snaps] == [False, False, True, True, True, True]
    assert mon.budget.measured_share == pytest.approx(2 / 6)
    for snap, mean in zip(snaps, means, strict=True):
        summary = snap["layers"][0]["summary"]
        partial = snap.get("partial", False)
        for name in ("relu_active", "weight_norm", "angular_update", "max_abs_cos"):
            assert math.isnan(summary[name]) == partial, (snap["step"], name)
        # The BatchNorm statistics do not depend on the budget.
        assert torch.allclose(torch.tensor(snap["layers"][0]["batch_mean"]) if "batch_mean" in snap["layers"][0] else mean, mean, atol=1e-6)
        assert math.isfinite(summary["drift"])


def test_the_last_step_written_at_close_keeps_arrays_only_if_fully_measured(tmp_path) -> None:
    """The step held back by the snapshot interval and written at close: a partial one goes out
    as a summary, so no snapshot carries BN arrays without the weight and ReLU arrays of its step."""
    path = tmp_path / "run.jsonl"
    budgeted_run(path, snapshot_interval_s=3600)
    snaps = of_kind(read_records(path), "snapshot")
    assert [(s["step"], s.get("partial", False)) for s in snaps] == [(1, False), (6, True)]
    first, last = snaps[0]["layers"][0], snaps[-1]["layers"][0]
    assert "batch_mean" in first and "weight_norm" in first and "relu_active" in first
    assert "batch_mean" not in last and "weight_norm" not in last
    assert math.isfinite(last["summary"]["drift"]) and math.isnan(last["summary"]["weight_norm"])


def test_a_layer_called_twice_in_a_forward_is_measured_at_its_last_call(tmp_path) -> None:
    """Running statistics are copied for every layer as the forward starts; a layer that runs
    again in the same forward is measured against the statistics its first call left."""
    torch.manual_seed(8)
    conv, bn = nn.Conv2d(3, 3, 1, bias=False), nn.BatchNorm2d(3)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    bn.register_forward_pre_hook(lambda m, a: seen.append((m.running_mean.clone(), a[0].detach().clone())))

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = conv, bn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(self.bn(self.conv(x)) + 1.0))

    model = Twice()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.jsonl"
    with bntop_torch.watch(model, opt, record=path, snapshot_interval_s=0, arrays_interval_s=0):
        for i in range(2):
            loss = model(fixed(i, 4, 3, 3, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    snaps = of_kind(read_records(path), "snapshot")
    for k, snap in enumerate(snaps):
        running_pre, x = seen[2 * k + 1]  # the second call of step k
        assert_close(snap["layers"][0]["running_mean_pre"], running_pre.double(), what="running_mean_pre")
        assert_close(snap["layers"][0]["batch_mean"], x.double().mean(dim=(0, 2, 3)), what="batch_mean")
