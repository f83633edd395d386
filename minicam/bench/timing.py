"""Timing (interleaved, medians), memory (tracemalloc and RSS), the matmul peak, and the machine."""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

try:
    import resource  # Unix only: page-fault counts
except ImportError:
    resource = None

import minicam



# ----------------------------------------------------------------------------
# Timing and memory
# ----------------------------------------------------------------------------


@dataclass
class Settings:
    repeats: int      # rounds of the round-robin
    min_repeats: int  # every candidate runs at least this often
    budget: float     # seconds per candidate after which it stops (once it has min_repeats times)
    peak_repeats: int  # repetitions of the matmul peak
    settle: float     # seconds of pause when the round-robin switches framework (see time_round_robin)


FULL = Settings(repeats=15, min_repeats=3, budget=3.0, peak_repeats=30, settle=0.3)
QUICK = Settings(repeats=2, min_repeats=1, budget=0.05, peak_repeats=3, settle=0.0)


def time_round_robin(candidates: dict, settings: Settings) -> dict:
    """({(framework, name): [seconds, ...]}, {(framework, name): [page faults, ...]}) for
    candidates {(framework, name): callable}.

    Every round runs every candidate once, one framework's block after the other's
    (the order alternating between rounds), with a pause of `settle` seconds at each
    switch. The pause matters: after a call, OpenBLAS's worker threads (NumPy) spin
    for up to ~0.1 s before they sleep, and torch's OpenMP threads spin too; on a
    machine with few cores, the other framework's threads would then fight spinning
    threads for the cores (measured here: torch's forward went from 1 ms to a median
    of 6 ms, tails of 180 ms, when run right after NumPy work). After the pause, the
    block's first candidate runs once untimed: the first parallel call after a sleep
    pays for waking the thread pool (10 ms for a 1 ms call, measured here).
    """
    frameworks = list(dict.fromkeys(framework for framework, _ in candidates))
    for fn in candidates.values():  # untimed warm-up
        fn()
    times = {key: [] for key in candidates}
    faults = {key: [] for key in candidates}
    for round_ in range(settings.repeats):
        order = frameworks if round_ % 2 == 0 else frameworks[::-1]
        for framework in order:
            time.sleep(settings.settle)
            next(fn for key, fn in candidates.items() if key[0] == framework)()  # untimed: wakes its threads
            for key, fn in candidates.items():
                spent = times[key]
                if key[0] != framework or (len(spent) >= settings.min_repeats and sum(spent) > settings.budget):
                    continue
                before = _page_faults()
                start = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - start)
                faults[key].append(_page_faults() - before)
    return times, faults


def _page_faults():
    """Minor page faults of this process so far: each is a fresh page of memory touched
    for the first time (a new large array costs one per 4 KiB, about 2 us each on this VM)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


class PeakMemory:
    """Peak memory during one call: tracemalloc (NumPy and Python) and resident set size (any library).

    tracemalloc sees every allocation NumPy makes (and Python objects), byte-exact, but
    none of torch's. RSS sees everything the process touches, but only on Linux, at
    page granularity, and only as well as the C allocator returns freed memory: so
    before the memory pass `prepare()` makes glibc's malloc serve every block of
    64 KiB or more with its own mmap (released on free) instead of reusing its heap,
    and `rss_peak` trims the heap, resets the kernel's high-water mark
    (/proc/self/clear_refs) and reads VmHWM - VmRSS. Blocks under 64 KiB may still
    reuse freed heap and be undercounted (for both frameworks alike); library scratch
    space (OpenBLAS buffers, oneDNN workspaces) counts when first touched, which the
    warm-up call does before measuring.
    """

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

    def __init__(self):
        self.libc = None
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.rss_available = self._status("VmHWM") is not None
        except (OSError, AttributeError):
            self.rss_available = False

    def prepare(self):
        if self.libc is not None:
            self.libc.mallopt(self.M_MMAP_THRESHOLD, 64 * 1024)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, 128 * 1024)

    @staticmethod
    def _status(field_name):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024  # kB
        return None

    def rss_peak(self, fn) -> int | None:
        """Call fn once (after a warm-up call: see the class docstring); the RSS it added at its peak."""
        if not self.rss_available:
            return None
        gc.collect()
        self.libc.malloc_trim(0)
        before = self._status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        result = fn()
        peak = self._status("VmHWM")
        del result
        return max(peak - before, 0)

    @staticmethod
    def tracemalloc_peak(fn) -> int:
        """Call fn once; the peak of the memory allocated through Python's and NumPy's allocators."""
        gc.collect()
        tracemalloc.start()
        try:
            result = fn()
            peak = tracemalloc.get_traced_memory()[1]
            del result
        finally:
            tracemalloc.stop()
        return peak


def matmul_peak(dtype, repeats: int, torch=None, settle: float = 0.3) -> dict:
    """GFLOPS of a 1024 x 1024 @ 1024 x 1024 product (2 * 1024^3 FLOPs): median and best."""
    n = 1024
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    candidates = {("numpy", "matmul"): lambda: a @ b}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        candidates[("torch", "matmul")] = lambda: ta @ tb
    times, _ = time_round_robin(candidates, Settings(repeats, repeats, 1e9, repeats, settle))
    flops = 2.0 * n**3
    return {name: {"median_gflops": flops / statistics.median(t) / 1e9, "best_gflops": flops / min(t) / 1e9}
            for (name, _), t in times.items()}


# ----------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------


def machine(torch=None) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "minicam": minicam.__version__,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "blas": _blas(),
    }
    return info


def load_average():
    """The 1, 5 and 15 minute load averages: other work on the machine while the bench ran."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _blas():
    try:
        from threadpoolctl import threadpool_info

        keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer", "architecture")
        return [{k: lib.get(k) for k in keep if k in lib} for lib in threadpool_info()]
    except ImportError:
        try:
            return np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except Exception as error:  # numpy's config layout is not a stable API
            return f"unknown ({error})"
