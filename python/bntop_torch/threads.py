"""The measurement's tensor work runs on the training thread alone.

Its reductions are bound by memory bandwidth, not arithmetic: a second intra-op thread makes
them barely faster (on a busy machine often slower, waiting to be scheduled) while doubling the
CPU they cost and waking a core that the user's other work, or training itself, could use. The
thread count is per calling thread and restored on the way out.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def on_single_thread(fn: F) -> F:
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with single_thread():
            return fn(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
