"""What watching costs: the time the training thread spends in bntop-torch's hooks."""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Stopwatch:
    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: F) -> F:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed  # type: ignore[return-value]
