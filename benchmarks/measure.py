"""How the benchmarks measure: wall time per call (after warm-up calls), and process memory on the
CPU (Linux ``/proc``; ``None`` where it is not available): the current and peak resident set
size, and the peak growth over a block of code with the peak reset first, so that each measured
call counts its own peak, whatever ran before."""
import contextlib
import ctypes
import gc
import os
import resource
import sys
import time
from typing import Callable, Iterator, Optional


def time_per_call(step: Callable[[], object], steps: int, warmup: int = 2) -> float:
    """Mean wall seconds of ``step()`` over ``steps`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def rss() -> Optional[int]:
    """Current resident set size in bytes."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def hwm() -> Optional[int]:
    """Peak resident set size (``VmHWM``) in bytes since start or the last :func:`reset_hwm`."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def maxrss() -> int:
    """``ru_maxrss`` of this process in bytes (KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == 'darwin' else r * 1024


def trim_heap() -> None:
    """Collect garbage and give free heap pages back to the OS (glibc), so RSS is what is live."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def peak_growth() -> Iterator[dict]:
    """``with peak_growth() as m: ...`` sets ``m['bytes']``: the peak RSS inside the block minus
    the RSS before it (``None`` where the peak cannot be reset)."""
    out = {'bytes': None}
    trim_heap()
    base = rss()
    ok = reset_hwm() and base is not None
    try:
        yield out
    finally:
        peak = hwm() if ok else None
        out['bytes'] = None if peak is None else max(0, peak - base)
