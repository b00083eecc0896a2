"""`watch(model, optimizer, ...)`: the Monitor that ties hooks, measurement, stream and sinks.

A step is one `optimizer.step()`, seen through the optimizer's step pre- and post-hooks. After
each step the Monitor packs the step's numbers into one tensor (one device-to-host copy), hands
the snapshot to the writer thread, then applies the controls that arrived (pausing if asked).
"""
from __future__ import annotations

import atexit
import math
import os
import queue
import sys
import time
from typing import Any, Iterable, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed, header, precise, stats
from .budget import DEFAULT_FRACTION, MeasureBudget
from .channel import ControlChannel
from .controls import Controller, StopTraining
from .hooks import BnLayer, Taps, find_bn_layers, finish_captures
from .packing import StepMeasure
from .stopwatch import Stopwatch
from .threads import on_single_thread, single_thread
from .sink import FileOutput, Output, ServeProcess, Writer, find_bntop
from .stream import (
    ARRAYS_INTERVAL_S,
    SERVE_ARRAYS_INTERVAL_S,
    SNAPSHOT_INTERVAL_S,
    Decimator,
    Keep,
    LayerMeta,
    StepData,
    build_snapshot,
)

PathLike = Union[str, "os.PathLike[str]"]
# While paused, how often rank 0 tells the other ranks it still is (a collective each time).
PAUSE_POLL_S = 0.2


class Monitor:
    """Watches a model's BatchNorm layers through one optimizer. Use `watch()` to make one."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        record: Optional[PathLike] = None,
        serve: bool = False,
        bntop: Optional[str] = None,
        socket: Optional[PathLike] = None,
        tcp: Optional[str] = None,
        token: Optional[str] = None,
        serve_record: Optional[PathLike] = None,
        allow_viewer_quit: bool = False,
        precise_loader: Optional[Iterable[Any]] = None,
        precise_batches: int = 32,
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
        arrays_interval_s: Optional[float] = None,
        weight_metrics: bool = True,
        measure_budget: Optional[float] = DEFAULT_FRACTION,
        max_queued_snapshots: int = 32,
    ):
        self.model = model.module if isinstance(model, DistributedDataParallel) else model
        self.optimizer = optimizer
        self.layers: list[BnLayer] = find_bn_layers(self.model)
        self.rank, self.world_size = distributed.world()
        self.step = 0
        self.epoch_index = 0
        self._started = time.monotonic()
        self._started_unix_ms = header.now_unix_ms()
        self._closed = False
        self._quit = False
        self._header_sent = False
        self._forward_since_step = False
        # Whether the forward of the step being measured wanted the per-channel arrays.
        self._arrays_at_forward: Optional[bool] = None
        # Whether the step being measured runs the optional passes (budget.py).
        self.budget = MeasureBudget(measure_budget)
        self._optional = True
        self._next_loss = math.nan
        self._next_accuracy = math.nan
        self._pending: Optional[StepData] = None
        self._held_back: Optional[tuple[StepData, list[torch.Tensor]]] = None
        self._last_emitted_step = -1
        self._layout = stats.Layout(
            tuple(layer.channels for layer in self.layers),
            tuple(float(layer.module.eps) for layer in self.layers),
        )
        # Controls from serve's stdout or from `control()`; rank 0 reads them.
        self.controls: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self._precise_loader = precise_loader
        self._precise_batches = precise_batches
        self.controller = Controller(
            self.layers, optimizer, self._precise if precise_loader is not None else None
        )
        if arrays_interval_s is None:
            arrays_interval_s = SERVE_ARRAYS_INTERVAL_S if serve else ARRAYS_INTERVAL_S
        self._decimator = Decimator(snapshot_interval_s, arrays_interval_s)

        self.serve: Optional[ServeProcess] = None
        self.writer: Optional[Writer] = None
        self.record_path = os.fspath(record) if record is not None else None
        if not self.layers:
            print(f"bntop-torch: {type(self.model).__name__} has no BatchNorm layers", file=sys.stderr)
        if self.rank == 0:
            # The binary first: a missing one must fail before anything is started or created.
            binary = find_bntop(bntop) if serve else None
            outputs: list[Output] = []
            if record is not None:
                outputs.append(FileOutput(record))
            if binary is not None:
                args = _serve_args(socket, tcp, token, serve_record, allow_viewer_quit)
                self.serve = ServeProcess(binary, args)
                self.controls = self.serve.controls
                outputs.append(self.serve)
            self.writer = Writer(
                outputs, lambda data: build_snapshot(data, self._layout), max_queued_snapshots
            )

        self._channel = ControlChannel(self.controls, self.rank, self.world_size)
        self._measure = StepMeasure(self.layers, optimizer, weight_metrics, budget=self.budget)
        self.stopwatch = Stopwatch()
        self.taps = Taps(self.model, self.layers, self._is_open, self._training_forward, self.stopwatch)
        self.taps.scratch = self._measure.scratch
        self.taps.budget = self.budget
        self.taps.on_training_forward_end = self._flush_pending
        self.taps.batch_only = self.rank != 0
        self.taps.install()
        self._timed_record_and_control = self.stopwatch.wrap(self._record_and_control)
        self._hooks = [
            optimizer.register_step_pre_hook(self.stopwatch.wrap(on_single_thread(self._before_step))),
            optimizer.register_step_post_hook(self._after_step),
        ]
        # A script that ends (or dies) without close() still gets its end record, and serve
        # its end of input.
        atexit.register(self._close_at_exit)

    # --- the public API ------------------------------------------------------------------

    def log(self, loss: Optional[float] = None, accuracy: Optional[float] = None) -> None:
        """The training batch's loss and accuracy. Called between the forward and
        `optimizer.step()`, they go with that step; called after the step (before the next
        forward), with the step just done."""
        values = [_as_float(loss), _as_float(accuracy)]
        # After the step: the step just done, whether its snapshot is waiting to be written or
        # was held back by the decimation (it is written at close if it is the last).
        done = self._pending or (self._held_back[0] if self._held_back is not None else None)
        if not self._forward_since_step and done is not None and done.step == self.step:
            if loss is not None:
                done.loss = values[0]
            if accuracy is not None:
                done.batch_accuracy = values[1]
            return
        if loss is not None:
            self._next_loss = values[0]
        if accuracy is not None:
            self._next_accuracy = values[1]

    def evaluation(
        self,
        loss: Optional[float] = None,
        accuracy: Optional[float] = None,
        *,
        samples: int = 0,
        batch_stats_loss: Optional[float] = None,
        batch_stats_accuracy: Optional[float] = None,
    ) -> None:
        """A held-out evaluation after the current step. `loss`/`accuracy` are with BN on its
        running statistics (model.eval()); the `batch_stats_*` ones, if you measured them, with
        BN in train mode. What you do not give is written as unknown (NaN)."""
        self._flush_pending()
        self._emit(
            {
                "kind": "evaluation",
                "step": self.step,
                "samples": int(samples),
                "batch_stats": {
                    "loss": _as_float(batch_stats_loss),
                    "accuracy": _as_float(batch_stats_accuracy),
                },
                "running_stats": {"loss": _as_float(loss), "accuracy": _as_float(accuracy)},
            }
        )

    def epoch(self, number: Optional[int] = None) -> None:
        """Call at the start of each epoch: an epoch marker in the stream (none before the
        first step) and the epoch number of the following snapshots."""
        self.epoch_index = number if number is not None else (self.epoch_index + 1 if self.step > 0 else 0)
        if self.step > 0:
            self._flush_pending()
            self._emit(
                {"kind": "marker", "step": self.step, "marker": "epoch", "label": f"epoch {self.epoch_index}"}
            )

    def control(self, control: dict[str, Any]) -> None:
        """Queue a control as if a viewer had sent it (applied after the next step)."""
        self.controls.put(control)

    def close(self, reason: str = "completed", message: Optional[str] = None) -> None:
        """Write the last snapshot and the end record, stop serve and remove every hook."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        for h in self._hooks:
            h.remove()
        self.taps.remove()
        if self.rank != 0:
            return
        if self._quit and reason == "completed":
            reason = "quit"
        self._flush_pending()
        if self._held_back is not None and self._held_back[0].step > self._last_emitted_step:
            data, pieces = self._held_back
            data.packed = torch.cat(pieces).cpu()
            # The run's last step keeps its arrays, unless its optional passes did not run: a
            # reader would then show its BN arrays beside weight arrays of an earlier step.
            data.whole = not data.partial
            self._emit_snapshot(data)
        self._held_back = None
        if self._header_sent:
            end: dict[str, Any] = {
                "kind": "end",
                "step": self.step,
                "reason": reason,
                "elapsed_s": time.monotonic() - self._started,
            }
            if message:
                end["message"] = message[:4000]
            self._emit(end)
        if self.writer is not None:
            self.writer.close()
            if self.writer.dropped:
                print(f"bntop-torch: {self.writer.dropped} snapshots dropped (the writer fell behind)", file=sys.stderr)
        if self.serve is not None:
            code = self.serve.close()
            if code not in (0, None):
                print(f"bntop-torch: bntop serve exited with status {code}", file=sys.stderr)

    def _close_at_exit(self) -> None:
        died = getattr(sys, "last_value", None)
        if self._quit or isinstance(died, (StopTraining, KeyboardInterrupt)):
            self.close("quit")
        elif died is not None:
            self.close("error", f"{type(died).__name__}: {died}")
        else:
            self.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, StopTraining):
            self.close("quit")
        elif issubclass(kind, KeyboardInterrupt):
            self.close("quit", "interrupted")
        else:
            self.close("error", f"{kind.__name__}: {value}")

    # --- hooks ------------------------------------------------------------------------------

    def _is_open(self) -> bool:
        return not self._closed

    def _training_forward(self) -> None:
        # The step waiting for a loss logged after it goes to the writer when this forward ends
        # (Taps.on_training_forward_end).
        first = not self._forward_since_step
        self._forward_since_step = True
        # Decided now, so that the ReLU passes only the per-channel arrays need run only then.
        self._arrays_at_forward = self._decimator.arrays_due(time.monotonic() - self._started)
        # The optional passes: decided once per step (its first forward, if it accumulates
        # gradients over several), and always on a step that keeps its arrays.
        if first:
            self._optional = self.budget.due()
        self._optional |= self._arrays_at_forward
        self.taps.relu_moments = self._arrays_at_forward
        self.taps.relu_active = self._measure.weights_due = self._optional

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._measure.before_update(full=self.rank == 0)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        device = self._device()
        self._timed_record_and_control(device)
        # Waiting while paused is not a cost of watching.
        self._wait_while_paused(device)
        if self._quit:
            raise StopTraining(f"bntop asked the run to stop after step {self.step}")

    def _record_and_control(self, device: torch.device) -> None:
        self.step += 1
        self._forward_since_step = False
        if self.rank == 0:
            with single_thread():
                self._measure.after_update()
            self.budget.step_done(self._optional)
            if not self._header_sent:
                self._send_header()
        # Which module feeds which BN is known after the first step's forward.
        self.taps.stop_learning_topology()
        gathered, incoming = self._channel.after_step(lambda: self._batch_moments(device), device)
        if self.rank == 0:
            with single_thread():
                self._record_step(device, gathered)
        for layer in self.layers:
            layer.capture = None
        self.taps.forget_outputs()
        self._apply_controls(incoming)

    # --- internals --------------------------------------------------------------------------

    def _device(self) -> torch.device:
        for layer in self.layers:
            if layer.module.running_mean is not None:
                return layer.module.running_mean.device
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def _batch_moments(self, device: torch.device) -> torch.Tensor:
        finish_captures(self.layers)
        parts: list[torch.Tensor] = []
        for name in ("batch_mean", "batch_var"):
            for layer in self.layers:
                cap = layer.capture
                t = getattr(cap, name) if cap is not None else None
                parts.append(t.to(device) if t is not None else torch.full((layer.channels,), math.nan, device=device))
        return torch.cat(parts)

    def _send_header(self) -> None:
        self.taps.stop_learning_topology()
        batch = next((layer.input_shape[0] for layer in self.layers if layer.input_shape), 0)
        hdr = header.build_header(
            self.model,
            self.optimizer,
            self.layers,
            started_unix_ms=self._started_unix_ms,
            batch_size=int(batch),
            world_size=self.world_size,
            controls=self.controller.supported(),
            recording=self._decimator.policy() if self.record_path is not None else None,
            device=str(self._device()),
        )
        self._header_sent = True
        self._emit(hdr)

    def _meta(self) -> LayerMeta:
        lr_of = {id(p): g["lr"] for g in self.optimizer.param_groups for p in g["params"]}
        modes, momenta, cumulative, by_batch, lrs = [], [], [], [], []
        for layer in self.layers:
            m = layer.module
            cap = layer.capture
            train = cap.mode_train if cap is not None else (m.training or not layer.tracks)
            modes.append("train" if train else "eval")
            momenta.append(math.nan if m.momentum is None else float(m.momentum))
            cumulative.append(m.momentum is None)
            by_batch.append(train)
            w = getattr(layer.feeder, "weight", None) if layer.feeder is not None else None
            lrs.append(float(lr_of.get(id(w), math.nan)))
        return LayerMeta(
            modes=modes,
            momenta=momenta,
            cumulative=cumulative,
            normalised_by_batch=by_batch,
            affine=[layer.affine for layer in self.layers],
            sync=[layer.sync for layer in self.layers],
            lr=lrs,
        )

    def _record_step(self, device: torch.device, gathered: Optional[torch.Tensor]) -> None:
        time_s = time.monotonic() - self._started
        keep = self._decimator.decide(time_s, self._arrays_at_forward)
        self._arrays_at_forward = None
        # An empty piece keeps torch.cat happy for a model without BN layers.
        pieces = [torch.empty(0, device=device)] + self._measure.pieces(device)
        if gathered is not None:
            pieces.append(gathered.reshape(-1).to(device))
        data = StepData(
            step=self.step,
            epoch=self.epoch_index,
            time_s=time_s,
            loss=self._next_loss,
            batch_accuracy=self._next_accuracy,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            whole=keep is Keep.WHOLE,
            meta=self._meta(),
            packed=torch.empty(0),
            world_size=self.world_size if gathered is not None else 1,
            partial=not self._optional,
        )
        self._next_loss = self._next_accuracy = math.nan
        if keep is Keep.SKIP:
            # Not copied: only the newest skipped step is kept, for the last snapshot at close.
            self._held_back = (data, pieces)
            return
        self._held_back = None
        # The one device-to-host copy of the step.
        data.packed = torch.cat(pieces).cpu()
        self._pending = data

    def _flush_pending(self) -> None:
        if self._pending is not None:
            data, self._pending = self._pending, None
            self._emit_snapshot(data)

    def _emit_snapshot(self, data: StepData) -> None:
        self._last_emitted_step = data.step
        if self.writer is not None:
            self.writer.snapshot(data)

    def _emit(self, record: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.record(record)

    def _apply_controls(self, controls: list[dict[str, Any]]) -> None:
        if not controls:
            return
        # The step's snapshot comes before the controls applied after it.
        self._flush_pending()
        for control in controls:
            applied_before = self.controller.state.applied
            records = self.controller.handle(control, self.step)
            if self.controller.state.applied > applied_before:
                self._decimator.control_applied()
            for record in records:
                if record.get("kind") == "population":
                    record = {"kind": "population", "step": self.step, **record}
                if self.rank == 0:
                    self._emit(record)
            if self.controller.state.quit:
                self._quit = True

    def _wait_while_paused(self, device: torch.device) -> None:
        state = self.controller.state
        while state.paused and not self._quit:
            if state.steps_granted > 0:
                state.steps_granted -= 1
                return
            incoming = self._channel.while_paused(PAUSE_POLL_S, device, self._serve_gone)
            self._apply_controls(incoming)

    def _serve_gone(self) -> list[dict[str, Any]]:
        if self.serve is not None and self.serve.process.poll() is not None:
            # Nobody is left to resume the run: resume it (on every rank).
            print("bntop-torch: bntop serve exited while paused; resuming", file=sys.stderr)
            return [{"control": "resume"}]
        return []

    def _precise(self, apply_to: Optional[list[int]]) -> dict[str, Any]:
        assert self._precise_loader is not None
        record, _ = precise.population(
            self.model, self.layers, self._precise_loader, self._precise_batches, self._device(), apply_to
        )
        return {"kind": "population", **record}


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item())
    return float(value)


def _serve_args(
    socket: Optional[PathLike],
    tcp: Optional[str],
    token: Optional[str],
    serve_record: Optional[PathLike],
    allow_viewer_quit: bool,
) -> list[str]:
    args: list[str] = []
    if socket is not None:
        args += ["--socket", os.fspath(socket)]
    if tcp is not None:
        args += ["--tcp", tcp]
    if token is not None:
        args += ["--token", token]
    args += ["--record", os.fspath(serve_record)] if serve_record is not None else ["--no-record"]
    if allow_viewer_quit:
        args.append("--allow-viewer-quit")
    return args


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    record: Optional[PathLike] = None,
    serve: bool = False,
    bntop: Optional[str] = None,
    socket: Optional[PathLike] = None,
    tcp: Optional[str] = None,
    token: Optional[str] = None,
    serve_record: Optional[PathLike] = None,
    allow_viewer_quit: bool = False,
    precise_loader: Optional[Iterable[Any]] = None,
    precise_batches: int = 32,
    snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
    arrays_interval_s: Optional[float] = None,
    weight_metrics: bool = True,
    measure_budget: Optional[float] = DEFAULT_FRACTION,
) -> Monitor:
    """Watch every BatchNorm layer of `model`; a step is one `optimizer.step()`.

    record: write a bntop session file (replay with `bntop replay FILE`).
    serve: also start `bntop serve --source -` (binary: `bntop=`, $BNTOP_BIN or PATH) so that
        viewers can `bntop attach`; socket, tcp, token, serve_record (serve's own recording) and
        allow_viewer_quit are passed on.
    precise_loader: batches (inputs, or tuples whose first item is the input) for PreciseBN;
        without it the precise_bn controls are refused.
    snapshot_interval_s, arrays_interval_s: the decimation, as bntop's recorder (0.04 s; per-channel
        arrays every 2 s, 1 s when serving); 0 keeps every step whole.
    weight_metrics: False leaves out the feeding layers' weight norm, angular update, cos(w, g)
        and radial fraction, the costliest numbers (a copy of those weights and about 16 passes
        over them per step).
    measure_budget: the share of the run's wall time the optional passes may take (the feeding
        layers' weight geometry and the ReLU: about 3% of a CPU step when run every step). They
        run on every step that keeps per-channel arrays and on as many others as the budget
        allows; the snapshots of the rest are marked `partial` and leave those numbers out.
        None runs them every step. The BatchNorm statistics are measured every step regardless.
    Under torch.distributed every rank calls watch(); rank 0 writes and serves.

    Controls (from viewers, or `Monitor.control`) are applied in the step hook of the optimizer
    step in progress, and echoed with the number of steps completed. `pause` blocks inside
    `optimizer.step()` until `resume` (`step` lets exactly one more step through); `quit` raises
    StopTraining from `optimizer.step()` once that step is done: the `with` block then ends the
    run with reason "quit" (or catch it). A `set_mode` layer stays in that mode through your
    `model.train()` calls, until set back.
    """
    return Monitor(
        model,
        optimizer,
        record=record,
        serve=serve,
        bntop=bntop,
        socket=socket,
        tcp=tcp,
        token=token,
        serve_record=serve_record,
        allow_viewer_quit=allow_viewer_quit,
        precise_loader=precise_loader,
        precise_batches=precise_batches,
        snapshot_interval_s=snapshot_interval_s,
        arrays_interval_s=arrays_interval_s,
        weight_metrics=weight_metrics,
        measure_budget=measure_budget,
    )


__all__: Sequence[str] = ["Monitor", "watch", "StopTraining"]
