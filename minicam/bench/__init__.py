"""`python -m minicam bench`: minicam's speed and memory, side by side with torch, in one run.

What is measured, for every net, dtype and batch size N:

  forward                the logits, without a graph (minicam.no_grad / torch.no_grad)
  forward+backward       the logits, then d<v, logits>/d(input, every parameter) for a fixed random v
  convs forward          the net's conv2d calls alone, on the inputs they receive in the net:
  convs forward+backward   what "share of the matmul peak" is about (see below)
  cam <method>           explain(model, x, method, layer) end to end: capture at the last conv
                         stage, the method's map, its ReLU, bilinear upsampling, min-max; for the
                         gradient methods torch runs a hand-written pipeline (torch_maps,
                         torch_explain) of the same steps, activations and gradients from
                         torch.autograd.grad

How it is measured (numbers on a shared machine are noisy, so):
  * Interleaved: all candidates of one (net, dtype, N) group, minicam's and torch's, run
    round-robin: every round runs every candidate once, so a slow spell of the machine
    hits them all alike (minicam's and torch's blocks alternate, with a pause between
    them: see time_round_robin). Each candidate runs once untimed first (caches, BLAS
    buffers). A candidate stops after `budget` seconds in total once it has `min_repeats`.
  * Medians of those times; ratio = minicam median / torch median (above 1: minicam slower).
    Page faults per call are counted too: a fresh page costs about 2 us on this VM, and
    how many there are depends on how glibc's malloc recycles memory, for both frameworks.
  * Memory, in a second pass after all timings (see PeakMemory): the peak of the
    NumPy (and Python) allocations during one call, from tracemalloc, and for both
    frameworks the peak resident set size (RSS) of the process during the call minus
    the RSS before it. torch allocates outside Python's allocator, so tracemalloc does
    not see its tensors: RSS is the measure both frameworks share, and the memory ratio
    compares RSS with RSS.
  * Convolution FLOPs: 2*N*K*C*kh*kw*OH*OW per conv2d (a multiply and an add per weight
    and output); forward+backward counts 3x (dx and dW cost one forward each). The
    share of the peak = conv FLOPs / time / matmul peak, where the peak is the median
    GFLOPS of a 1024 x 1024 NumPy matmul measured in the same run. For the "convs"
    rows the time is the convolutions' own; for forward and forward+backward it is
    the whole net's (everything else counts as overhead).

Output: a markdown table (printed, and written to DIR/bench.md) and the same numbers
as JSON (DIR/bench.json; printed instead of the table with --json), with the machine:
CPU model, cores, library versions and the BLAS threadpoolctl reports.

Files: nets.py (the nets, their torch twins, torch CAM pipelines), workloads.py (what a
row times), timing.py (interleaved timing, memory, matmul peak, machine); this file runs
them and writes the table.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minicam.bench.nets import DEFAULT_NETS, NETS
from minicam.bench.timing import FULL, QUICK, PeakMemory, Settings, load_average, machine, matmul_peak, time_round_robin
from minicam.bench.workloads import build_workloads
from minicam import files
from minicam.cam import METHODS
from minicam.errors import add_debug_flag

MIB = 2**20


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


@dataclass
class Options:
    nets: tuple = DEFAULT_NETS
    dtypes: tuple = ("float32", "float64")
    batch_sizes: tuple = (1, 32)
    methods: tuple = tuple(METHODS)
    settings: Settings = field(default_factory=lambda: FULL)
    use_torch: bool = True


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def run(options: Options, log=print) -> dict:
    """Time and measure every group; return the JSON-ready results."""
    torch = _import_torch() if options.use_torch else None
    settings = options.settings
    started, load_at_start = time.perf_counter(), load_average()
    log(f"matmul peak (1024^2, median of {settings.peak_repeats}) ...")
    peaks = {dtype: matmul_peak(np.dtype(dtype), settings.peak_repeats, torch, settings.settle)
             for dtype in options.dtypes}
    groups = [(NETS[net], dtype, n) for net in options.nets for dtype in options.dtypes for n in options.batch_sizes]

    rows = []
    for spec, dtype, n in groups:  # pass 1: timings
        log(f"timing {spec.name} {dtype} N={n} ...")
        workloads = build_workloads(spec, dtype, n, options.methods, torch)
        candidates = {}
        for w in workloads:
            candidates[("minicam", w.name)] = w.minicam
            if w.torch is not None:
                candidates[("torch", w.name)] = w.torch
        times, faults = time_round_robin(candidates, settings)
        peak = peaks[dtype]["numpy"]["median_gflops"] * 1e9
        for w in workloads:
            mine = times[("minicam", w.name)]
            theirs = times.get(("torch", w.name))
            row = {"net": spec.name, "dtype": dtype, "N": n, "workload": w.name,
                   "minicam_ms": 1e3 * statistics.median(mine), "minicam_repeats": len(mine),
                   "torch_ms": 1e3 * statistics.median(theirs) if theirs else None,
                   "torch_repeats": len(theirs) if theirs else 0, "agreement": w.agreement,
                   "conv_gflop": None if w.conv_flops is None else w.conv_flops / 1e9}
            row["ratio"] = row["minicam_ms"] / row["torch_ms"] if theirs else None
            row["minicam_page_faults"] = statistics.median(faults[("minicam", w.name)])
            row["torch_page_faults"] = statistics.median(faults[("torch", w.name)]) if theirs else None
            row["conv_share_of_peak"] = (None if w.conv_flops is None
                                         else w.conv_flops / (row["minicam_ms"] / 1e3) / peak)
            rows.append(row)
        del workloads, candidates
        gc.collect()

    memory = PeakMemory()  # pass 2: memory (after all timings: prepare() changes malloc's behaviour)
    memory.prepare()
    by_key = {(r["net"], r["dtype"], r["N"], r["workload"]): r for r in rows}
    for spec, dtype, n in groups:
        log(f"memory {spec.name} {dtype} N={n} ...")
        for w in build_workloads(spec, dtype, n, options.methods, torch, check=False):
            row = by_key[(spec.name, dtype, n, w.name)]
            # the tracemalloc call is also the RSS measurement's warm-up (PeakMemory's docstring)
            row["minicam_tracemalloc_mib"] = memory.tracemalloc_peak(w.minicam) / MIB
            rss = memory.rss_peak(w.minicam)
            row["minicam_rss_mib"] = None if rss is None else rss / MIB
            if w.torch is not None:
                w.torch()  # warm-up
            rss = memory.rss_peak(w.torch) if w.torch is not None else None
            row["torch_rss_mib"] = None if rss is None else rss / MIB
            usable = row["minicam_rss_mib"] is not None and row["torch_rss_mib"]
            row["memory_ratio"] = row["minicam_rss_mib"] / row["torch_rss_mib"] if usable else None
        gc.collect()

    info = machine(torch)
    info["load_average_at_end"] = load_average()
    info["load_average_at_start"] = load_at_start
    return {
        "machine": info,
        "matmul_peak_gflops": peaks,
        "nets": {name: NETS[name].description for name in options.nets},
        "layers": {name: NETS[name].layer for name in options.nets},
        "settings": vars(settings),
        "torch_available": torch is not None,
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }


# ----------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------


def _fmt(value, digits=2, suffix=""):
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# minicam bench", ""]
    blas = m["blas"]
    if isinstance(blas, list):
        blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('prefix')}, {b.get('num_threads')} threads"
                         + (f", {b['architecture']}" if b.get("architecture") else "") + ")" for b in blas)
    load = ", ".join(f"{a[0]:.1f}" if a else "?" for a in (m.get("load_average_at_start"), m.get("load_average_at_end")))
    lines += [f"- machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs; {m['platform']}; "
              f"1-minute load average at start, end: {load}",
              f"- python {m['python']}, numpy {m['numpy']}, torch {m['torch'] or 'not installed'}"
              + (f" ({m['torch_threads']} threads)" if m["torch"] else "") + f", minicam {m['minicam']}",
              f"- BLAS: {blas}"]
    for dtype, peak in results["matmul_peak_gflops"].items():
        text = ", ".join(f"{name} {p['median_gflops']:.0f} (best {p['best_gflops']:.0f})" for name, p in peak.items())
        lines.append(f"- matmul peak, 1024^2 {dtype}, GFLOPS: {text}")
    for name, description in results["nets"].items():
        lines.append(f"- net `{name}`: {description}; CAM layer `{results['layers'][name]}`")
    s = results["settings"]
    lines += [f"- {s['repeats']} interleaved rounds (a candidate stops after {s['budget']} s once it has "
              f"{s['min_repeats']} times); medians; ratio = minicam / torch; run took {results['seconds']:.0f} s",
              "- memory: peak during one call minus before; tracemalloc (NumPy + Python allocations) and resident "
              "set size (RSS, any library: the only measure torch shares); memory ratio = RSS / RSS",
              "- conv % peak: conv FLOPs / time / numpy matmul peak (convs rows: the convolutions alone; "
              "forward rows: the whole net's time)",
              "- page faults: median minor page faults per call (fresh 4 KiB pages: new large arrays; about 2 us each here)",
              "- agree: max |minicam - torch| of the normalised maps (cam rows), relative for the logits (forward)",
              ""]
    lines += ["| net | dtype | N | workload | minicam ms | torch ms | ratio | conv % peak | page faults minicam / torch "
              "| minicam MiB tracemalloc | minicam MiB RSS | torch MiB RSS | memory ratio | agree |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        share = None if r["conv_share_of_peak"] is None else 100 * r["conv_share_of_peak"]
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.0e}"
        lines.append(
            f"| {r['net']} | {r['dtype']} | {r['N']} | {r['workload']} | {_fmt(r['minicam_ms'])} | "
            f"{_fmt(r['torch_ms'])} | {_fmt(r['ratio'])} | {_fmt(share, 1)} | "
            f"{_fmt(r['minicam_page_faults'], 0)} / {_fmt(r['torch_page_faults'], 0)} | "
            f"{_fmt(r.get('minicam_tracemalloc_mib'), 1)} | {_fmt(r.get('minicam_rss_mib'), 1)} | "
            f"{_fmt(r.get('torch_rss_mib'), 1)} | {_fmt(r.get('memory_ratio'))} | {agree} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def _list(kind, choices=None, convert=str):
    def parse(text):
        values = tuple(convert(v) for v in text.replace(",", " ").split())
        if not values:
            raise argparse.ArgumentTypeError(f"give at least one {kind}")
        if choices is not None:
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(map(str, unknown))}; choose from "
                                                 f"{', '.join(map(str, choices))}")
        return values

    return parse


def _positive(what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be whole numbers, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {value}")
        return value

    return parse


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="minicam bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny repetitions (for tests and CI): numbers are rough")
    parser.add_argument("--out", type=Path, default=Path("minicam_out"),
                        help="folder for bench.json and bench.md (default: ./minicam_out)")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the markdown table")
    parser.add_argument("--nets", type=_list("net", NETS), default=DEFAULT_NETS,
                        help=f"comma-separated, from {', '.join(NETS)} (default: {','.join(DEFAULT_NETS)})")
    parser.add_argument("--dtypes", type=_list("dtype", ("float32", "float64")), default=("float32", "float64"),
                        help="comma-separated (default: float32,float64)")
    parser.add_argument("--batch-sizes", type=_list("batch size", convert=_positive("batch sizes")), default=(1, 32),
                        help="comma-separated (default: 1,32)")
    parser.add_argument("--methods", type=_list("method", METHODS), default=tuple(METHODS),
                        help="CAM methods to time, comma-separated (default: all)")
    parser.add_argument("--repeats", type=_positive("--repeats"),
                        help="rounds of the round-robin (default: 15; --quick: 2)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch columns even if torch is installed")
    parser.add_argument("--force", action="store_true", help="overwrite output files minicam did not write")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a folder (it is created if missing)")
    return args


def main(argv=None) -> int:
    args = parse_arguments([] if argv is None else list(argv))
    for name in ("bench.json", "bench.md"):  # refuse before the long run, not after it
        files.check_writable(args.out / name, args.force)
    settings = QUICK if args.quick else FULL
    if args.repeats is not None:
        settings = Settings(args.repeats, min(settings.min_repeats, args.repeats), settings.budget,
                            settings.peak_repeats, settings.settle)
    options = Options(nets=args.nets, dtypes=args.dtypes, batch_sizes=args.batch_sizes, methods=args.methods,
                      settings=settings, use_torch=not args.no_torch)
    log = (lambda *a: None) if args.json else (lambda text: print(text, flush=True))
    results = run(options, log=log)
    results["command"] = "python -m minicam bench " + " ".join(argv or [])
    table = markdown(results)
    files.write_json(args.out / "bench.json", results, args.force)
    files.write_text(args.out / "bench.md", table, args.force)
    print(json.dumps(results, indent=1) if args.json else table)
    return 0
