"""CPU threads for the network: no more than the cores other programs leave free.

PyTorch splits every CPU operation over its threads and waits for the slowest at the end of
each one. When another program keeps a core busy (Slicer's own UI thread, a second
segmentation, a video call), the thread that shares that core runs only part of the time and
every operation waits for it; a network of many short operations, such as EoFormer's blocked
point-wise layers, then runs several times slower than on the free cores alone.
:func:`adapted_threads` measures, just before a network pass, how many cores the rest of the
machine is using and runs the pass on the remaining ones (at least one, at most the threads
PyTorch was given).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import torch

__all__ = [
    "ADAPT_THREADS_ENV",
    "adapted_threads",
    "free_cores",
    "machine_busy_ticks",
    "threads_for_free_cores",
]

ADAPT_THREADS_ENV = "EOFORMER_ADAPT_THREADS"
"""Environment variable: ``0`` keeps PyTorch's thread count whatever the load."""

SAMPLE_S = 0.1
"""How long the machine's CPU use is sampled before a pass, seconds."""

_MARGIN = 0.25
"""A core counts as free when others use less than this share of it (short system noise)."""


def machine_busy_ticks() -> Optional[Tuple[int, int]]:
    """Busy and total clock ticks of all CPUs since boot (Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    total = sum(ticks[:8])
    return total - idle, total


def _process_ticks(stat_path: str) -> Optional[Tuple[int, int]]:
    """Parent pid and user + system clock ticks (all threads) of one ``/proc/PID/stat``."""
    try:
        with open(stat_path, encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])  # ppid; utime + stime


def _own_ticks() -> Optional[Dict[int, int]]:
    """Clock ticks of this process and of its direct children (the engine's reader
    processes, which do this program's work), by pid."""
    own = _process_ticks("/proc/self/stat")
    if own is None:
        return None
    me = os.getpid()
    ticks = {me: own[1]}
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return ticks
    for pid in pids:
        if pid == me:
            continue
        found = _process_ticks(f"/proc/{pid}/stat")
        if found is not None and found[0] == me:
            ticks[pid] = found[1]
    return ticks


def _own_ticks_between(before: Dict[int, int], after: Dict[int, int]) -> int:
    """Ticks this process and its children used between two :func:`_own_ticks` samples (a
    child started meanwhile counts whole; one that ended meanwhile is not counted)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(sample_s: float = SAMPLE_S) -> Optional[float]:
    """Cores of this process's CPU set that other programs left idle over ``sample_s``.

    This process's own threads and its child processes (readers of the next case) do not
    count as others.

    Returns:
        The number of free cores (fractional), or None where the load cannot be read (not
        Linux).
    """
    before, own_before = machine_busy_ticks(), _own_ticks()
    if before is None or own_before is None:
        return None
    time.sleep(sample_s)
    after, own_after = machine_busy_ticks(), _own_ticks()
    if after is None or own_after is None or after[1] <= before[1]:
        return None
    machine_cpus = os.cpu_count() or 1
    elapsed_ticks = (after[1] - before[1]) / machine_cpus  # ticks of one CPU
    own = _own_ticks_between(own_before, own_after)
    others = max((after[0] - before[0]) - own, 0) / elapsed_ticks
    # others' load is spread over the machine; count it against our CPU set in proportion
    usable = _usable_cores()
    others_here = others * usable / machine_cpus
    return max(usable - others_here, 0.0)


def threads_for_free_cores(limit: int, free: Optional[float]) -> int:
    """Threads to use: the free cores (a core counts when less than 25 % of it is taken),
    between 1 and ``limit``; ``limit`` when the load is unknown."""
    if free is None:
        return limit
    return max(1, min(limit, int(math.floor(free + _MARGIN))))


@contextmanager
def adapted_threads(device: torch.device, enabled: Optional[bool] = None) -> Iterator[int]:
    """Run the enclosed CPU work on the cores other programs leave free.

    Samples the machine's CPU use for :data:`SAMPLE_S` seconds, lowers
    ``torch.set_num_threads`` to the free cores for the duration (never raises it) and
    restores it afterwards. Nothing changes on a GPU, off Linux, or when ``enabled`` is False
    (default: the environment variable :data:`ADAPT_THREADS_ENV` is not ``0``).

    Yields:
        The number of threads in use inside.
    """
    if enabled is None:
        enabled = os.environ.get(ADAPT_THREADS_ENV, "1") != "0"
    limit = torch.get_num_threads()
    if not enabled or device.type != "cpu" or limit <= 1:
        yield limit
        return
    chosen = threads_for_free_cores(limit, free_cores())
    if chosen != limit:
        torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        if chosen != limit:
            torch.set_num_threads(limit)
