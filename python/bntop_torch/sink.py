"""Where records go: a writer thread that never blocks training, a session file, and a
`bntop serve --source -` child process (records to its stdin, controls from its stdout)."""
from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional, Protocol, Sequence, Union

import torch

from . import jsonl
from .stream import StepData

INSTALL_HINT = "install it with `cargo install --path .` run in a bntop checkout"


class BntopNotFound(FileNotFoundError):
    """`serve=True` needs the bntop binary."""


class Output(Protocol):
    def write_line(self, line: str) -> None: ...

    def close(self) -> object: ...


class FileOutput:
    """A session file: each line in one write call, nothing buffered (sessions/FORMAT.md), so a
    run killed at any moment leaves whole lines."""

    def __init__(self, path: Union[str, os.PathLike[str]]):
        self.path = os.fspath(path)
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write_line(self, line: str) -> None:
        data = line.encode()
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        os.close(self._fd)


def find_bntop(explicit: Optional[str] = None) -> str:
    """The bntop binary: the argument, else $BNTOP_BIN, else `bntop` on PATH."""
    for candidate, origin in ((explicit, "bntop="), (os.environ.get("BNTOP_BIN"), "BNTOP_BIN")):
        if candidate:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
            raise BntopNotFound(f"{origin} {candidate!r} is not an executable file; {INSTALL_HINT}")
    found = shutil.which("bntop")
    if found is None:
        raise BntopNotFound(
            f"the bntop binary is not on PATH ({INSTALL_HINT}, or pass bntop=PATH or set BNTOP_BIN)"
        )
    return found


class ServeProcess:
    """`bntop serve --source -`: our records on its stdin, viewers' controls on its stdout."""

    def __init__(self, binary: str, args: Sequence[str]):
        self.command = [binary, "serve", "--source", "-", *args]
        # Its own session: Ctrl-C reaches the training script, which ends the run (the end
        # record, then end of input); serve then exits by itself.
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, start_new_session=True
        )
        self.controls: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read_controls, name="bntop-controls", daemon=True)
        self._reader.start()
        self.broken = False

    def _read_controls(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                control = json.loads(raw)
            except ValueError:
                print(f"bntop-torch: ignoring a control line from serve: {raw[:200]!r}", file=sys.stderr)
                continue
            if isinstance(control, dict):
                self.controls.put(control)

    def write_line(self, line: str) -> None:
        if self.broken:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(line.encode())
        except (BrokenPipeError, OSError) as e:
            # Training goes on without viewers; the file output (if any) keeps recording.
            self.broken = True
            print(f"bntop-torch: bntop serve stopped reading ({e}); not streaming any more", file=sys.stderr)

    def close(self, timeout: float = 10.0) -> Optional[int]:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            return self.process.wait(5)


class Writer:
    """Builds and writes records on its own thread. Snapshots beyond `max_snapshots` waiting are
    dropped (counted); every other record is kept."""

    def __init__(
        self,
        outputs: list[Output],
        build_snapshot: Callable[[StepData], str],
        max_snapshots: int = 32,
    ):
        self.outputs = outputs
        self.build_snapshot = build_snapshot
        self.max_snapshots = max_snapshots
        self.dropped = 0
        # CPU seconds this thread spent building and writing records.
        self.cpu_s = 0.0
        self.error: Optional[BaseException] = None
        self._items: collections.deque[tuple[str, Any]] = collections.deque()
        self._snapshots = 0
        self._closing = False
        self._busy = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bntop-writer", daemon=True)
        self._thread.start()

    def record(self, record: dict[str, Any]) -> None:
        with self._cv:
            self._items.append(("record", record))
            self._cv.notify()

    def snapshot(self, data: StepData) -> bool:
        with self._cv:
            if self._snapshots >= self.max_snapshots:
                self.dropped += 1
                return False
            self._snapshots += 1
            self._items.append(("snapshot", data))
            self._cv.notify()
            return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued so far is written."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._items and not self._busy, timeout)

    def _run(self) -> None:
        # This thread's tensor work is small: on one thread it does not wake an OpenMP team of
        # its own to compete with training's intra-op threads (the setting is per thread).
        torch.set_num_threads(1)
        priority = _Priority()
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._items or self._closing)
                if not self._items:
                    return
                kind, item = self._items.popleft()
                self._busy = True
                if kind == "snapshot":
                    self._snapshots -= 1
                behind = self._snapshots >= self.max_snapshots // 4
            priority.set(behind)
            start = time.thread_time()
            try:
                line = self.build_snapshot(item) if kind == "snapshot" else jsonl.dumps(item)
                for out in self.outputs:
                    out.write_line(line)
            except Exception as e:  # noqa: BLE001 - reported once, training must go on
                if self.error is None:
                    self.error = e
                    print(f"bntop-torch: writing a record failed: {e!r}", file=sys.stderr)
            finally:
                self.cpu_s += time.thread_time() - start
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join()


# Niceness of the writer thread when it has fallen behind (see _Priority).
WRITER_NICE = 10


class _Priority:
    """The writer thread's scheduling. SCHED_IDLE while it keeps up: a training thread that wakes
    takes the core at once, where a thread that is only niced keeps it for the rest of its time
    slice and stalls the whole parallel region waiting for that one thread. When snapshots pile
    up (the cores never idle) it runs niced at normal policy until it has caught up, so nothing
    is dropped for lack of CPU. Leaving SCHED_IDLE takes privilege (root, or an RLIMIT_NICE that
    allows the nice value): without it the thread is only niced, never idle. Linux only, where a
    thread has its own policy and nice value."""

    def __init__(self) -> None:
        self._tid = threading.get_native_id()
        self._behind: Optional[bool] = None
        self._linux = sys.platform.startswith("linux")
        self._idle_ok = self._linux and hasattr(os, "SCHED_IDLE") and _may_leave_idle()

    def set(self, behind: bool) -> None:
        if not self._linux or behind == self._behind:
            return
        first = self._behind is None
        self._behind = behind
        try:
            if not self._idle_ok:
                if first:
                    os.setpriority(os.PRIO_PROCESS, self._tid, WRITER_NICE)
            elif behind:
                os.sched_setscheduler(self._tid, os.SCHED_OTHER, os.sched_param(0))
                os.setpriority(os.PRIO_PROCESS, self._tid, WRITER_NICE)
            else:
                os.sched_setscheduler(self._tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def _may_leave_idle() -> bool:
    """Whether this process may switch a thread from SCHED_IDLE back to SCHED_OTHER at nice
    WRITER_NICE (sched(7): CAP_SYS_NICE, taken here as root, or RLIMIT_NICE >= 20 - nice)."""
    if os.geteuid() == 0:
        return True
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    except (ImportError, AttributeError, OSError, ValueError):
        return False
    return soft == resource.RLIM_INFINITY or soft >= 20 - WRITER_NICE
