"""Parameter checks shared by every estimator and kernel: one message style, naming the parameter,
what is allowed and what was given.

Each checker returns the value converted (int, float, ...) or raises ValueError (TypeError for a
value of the wrong kind). :func:`check_memory` refuses, before any allocation, a buffer larger
than the memory this machine has available (MemoryError with the sizes in the message).
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np


def _fail(name, allowed, value):
    raise ValueError(f"{name} must be {allowed}; got {value!r}.")


def positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as int, or a clear error if it is not an integer >= minimum (bools are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        _fail(name, f"an integer >= {minimum}", value)
    return int(value)


def _real(value, name, allowed):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        _fail(name, allowed, value)
    return float(value)


def finite_float(value, name: str, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval [low, high] (ends excluded when ``*_open``)."""
    if high == math.inf:
        allowed = "a finite number" + ("" if low == -math.inf else f" {'>' if low_open else '>='} {low:g}")
    else:
        allowed = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    v = _real(value, name, allowed)
    if (not math.isfinite(v) or v < low or v > high or (low_open and v == low) or (high_open and v == high)):
        _fail(name, allowed, value)
    return v


def positive_float(value, name: str) -> float:
    """``value`` as a finite float > 0."""
    return finite_float(value, name, 0.0, low_open=True)


def boolean(value, name: str) -> bool:
    """True/False (numpy bools and the integers 0 and 1 are accepted)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    _fail(name, "True or False", value)


def choice(value, name: str, allowed) -> object:
    """``value`` if it is one of ``allowed`` (compared with ==, strings only)."""
    if not isinstance(value, str) or value not in allowed:
        _fail(name, f"one of {tuple(allowed)}", value)
    return value


def random_state(value, name: str = "random_state"):
    """None, a non-negative integer, a numpy RandomState or a numpy Generator."""
    if value is None or isinstance(value, (np.random.RandomState, np.random.Generator)):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        _fail(name, "None, a non-negative integer, a numpy RandomState or a numpy Generator", value)
    return int(value)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux: MemAvailable), else physical memory,
    or None when neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, hint: str = "lower batch_size") -> None:
    """Raise MemoryError when ``nbytes`` exceed the available memory (the allocation would fail or
    the process would be killed)."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs {nbytes / 2**30:,.1f} GiB of buffers, more than the "
                          f"{avail / 2**30:,.1f} GiB of memory available; {hint}.")


def worker_threads() -> int:
    """Threads an OpenMP region may start (each allocates its own buffers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
