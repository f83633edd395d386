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
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

try:
    import resource  # Unix only: page-fault counts
except ImportError:
    resource = None

import minicam
from minicam import models, nn, ops
from minicam.autograd import Tensor, grad, no_grad
from minicam.cam import METHODS, explain
from minicam.data import single_instance

MIB = 2**20


# ----------------------------------------------------------------------------
# The nets
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NetSpec:
    name: str
    description: str
    build: Callable  # (dtype) -> model in eval mode, the same weights on every call
    layer: str       # the layer the CAM methods explain: the last convolutional stage
    size: int        # input height = width


def _lesson(dtype):
    return models.lesson_cnn(pretrained=True).to(dtype)


def _tinyresnet(dtype):
    return models.TinyResNet(dtype=dtype, rng=np.random.default_rng(0)).eval()


def _resnet18(dtype):
    return models.resnet18(num_classes=10, width=16, dtype=dtype, rng=np.random.default_rng(0)).eval()


NETS = {
    "lesson": NetSpec("lesson", "LessonCNN: channels (8, 16, 32), shipped weights, 3 classes, 32x32 input",
                      _lesson, "features.relu3", 32),
    "tinyresnet": NetSpec("tinyresnet", "TinyResNet: widths (8, 16), one BasicBlock each, 3 classes, 32x32 input",
                          _tinyresnet, "layer2", 32),
}
if hasattr(models, "resnet18"):
    NETS["resnet18"] = NetSpec("resnet18", "resnet18 at width 16 (torchvision: 64), 10 classes, 112x112 input "
                               "(layer4 is 4x4)", _resnet18, "layer4", 112)
DEFAULT_NETS = ("lesson", "resnet18" if "resnet18" in NETS else "tinyresnet")


# ----------------------------------------------------------------------------
# The same nets in torch
# ----------------------------------------------------------------------------


def torch_twin(model, torch):
    """The same network in torch, in eval mode, with the same weights.

    Each minicam layer becomes its torch namesake with the same arguments. A
    container (LessonCNN, BasicBlock, ...) becomes a torch Module that runs
    minicam's own forward method: those call only their sub-modules and `+`,
    which work on torch tensors too. ResNet flattens with minicam.ops.flatten
    (torchvision with torch.flatten), so it gets a torch forward of its own.
    The weights are copied by load_state_dict (both use torch's keys); run()
    checks that the logits agree.
    """
    dtype = torch.float32 if model_dtype(model) == np.float32 else torch.float64
    twin = _torch_module(model, torch).to(dtype)  # first: loading float64 weights into float32 would round them
    state = {key: torch.from_numpy(np.array(value)) for key, value in model.state_dict().items()}
    twin.load_state_dict(state)
    return twin.eval()


def _torch_module(module, torch):
    tnn = torch.nn
    if isinstance(module, nn.Conv2d):
        return tnn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                          module.dilation, module.groups, bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return tnn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
    if isinstance(module, nn.Linear):
        return tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.MaxPool2d):
        return tnn.MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                             ceil_mode=module.ceil_mode)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, nn.Flatten):
        return tnn.Flatten(module.start_dim, module.end_dim)
    simple = {nn.ReLU: tnn.ReLU, nn.Identity: tnn.Identity, nn.Sigmoid: tnn.Sigmoid, nn.Tanh: tnn.Tanh}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, nn.Sequential):
        return tnn.Sequential(_torch_children(module, torch))
    if type(module).__name__ == "ResNet":
        forward = _torch_resnet_forward
    else:
        forward = type(module).forward
    twin_class = type(f"Torch{type(module).__name__}", (tnn.Module,), {"forward": forward})
    twin = twin_class()
    for name, child in _torch_children(module, torch).items():
        twin.add_module(name, child)
    private = {"training", "_parameters", "_buffers", "_non_persistent_buffers", "_modules", "_forward_hooks"}
    for name, value in vars(module).items():  # plain settings such as TinyResNet.stages
        if name not in private and not name.startswith("_"):
            setattr(twin, name, value)
    return twin


def _torch_children(module, torch):
    from collections import OrderedDict

    return OrderedDict((name, _torch_module(child, torch)) for name, child in module._modules.items()
                       if child is not None)


def _torch_resnet_forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(self.avgpool(x).flatten(1))


def model_dtype(model):
    return next(iter(model.parameters())).dtype


# ----------------------------------------------------------------------------
# Hand-written torch CAM pipelines for the gradient methods
# ----------------------------------------------------------------------------


def torch_maps(torch):
    """{method: (A, g) -> the method's map at the layer's resolution (N, h, w), with its own ReLU}.

    The formulas of minicam.cam.gradient and gradcampp (variant "paper"), in torch.
    A: (N, K, h, w) activations, g = dy/dA.
    """
    relu = torch.relu

    def weighted(w, A):  # sum_k w_k A_k per image
        return (w[:, :, None, None] * A).sum(dim=1)

    def gradcampp(A, g):  # eq. 19: alpha = 1 / (2 + g sum(A)) where g > 0 (and the denominator is > 0)
        denominator = 2 + g * A.sum(dim=(2, 3), keepdim=True)
        usable = (g > 0) & (denominator > 0)
        alpha = torch.where(usable, 1 / torch.where(usable, denominator, 1.0), 0.0)
        return relu(weighted((alpha * relu(g)).sum(dim=(2, 3)), A))

    def xgradcam(A, g):  # w_k = sum_ij A_kij g_kij / sum_ab A_kab, 0 where that sum is <= 0
        total = A.sum(dim=(2, 3))
        usable = total > 0
        w = torch.where(usable, (g * A).sum(dim=(2, 3)) / torch.where(usable, total, 1.0), 0.0)
        return relu(weighted(w, A))

    return {
        "gradcam": lambda A, g: relu(weighted(g.mean(dim=(2, 3)), A)),
        "gradcam++": gradcampp,
        "gradcam+": lambda A, g: relu(weighted(relu(g).mean(dim=(2, 3)), A)),
        "hirescam": lambda A, g: relu((g * A).sum(dim=1)),
        "gradcam-elementwise": lambda A, g: relu(g * A).sum(dim=1),
        "xgradcam": xgradcam,
        "layercam": lambda A, g: relu((relu(g) * A).sum(dim=1)),
    }


def torch_explain(torch, model, x, layer, formula):
    """Grad-CAM-style map in torch, end to end, with minicam's convention: the predicted
    class's logit, the map, bilinear (half-pixel) upsampling, exact per-image min-max."""
    kept = []
    handle = model.get_submodule(layer).register_forward_hook(lambda module, inputs, output: kept.append(output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    A = kept[-1]  # a module called twice (a block's ReLU) gives its last output, as in minicam
    score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()  # images are independent
    (g,) = torch.autograd.grad(score, A)
    maps = formula(A.detach(), g)
    maps = torch.nn.functional.interpolate(maps[:, None], size=tuple(x.shape[2:]), mode="bilinear",
                                           align_corners=False)[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), 0.0)


# ----------------------------------------------------------------------------
# Workloads: what one row of the table times
# ----------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    minicam: Callable
    torch: Callable | None = None
    conv_flops: float | None = None  # the FLOPs of its convolutions, for the share of the peak
    agreement: float | None = None   # max |minicam - torch| of the results (relative for logits)


def conv_layers(model, x):
    """[(input array, Conv2d module)] for every conv2d call of one forward pass on x."""
    calls = []
    handles = [m.register_forward_hook(lambda mod, inputs, output: calls.append((inputs[0].data, mod)))
               for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with no_grad():
            model(Tensor(x))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def conv_flops(calls) -> float:
    """2*N*K*(C/groups)*kh*kw*OH*OW summed over the calls: the forward FLOPs."""
    total = 0.0
    for x, conv in calls:
        kh, kw = conv.kernel_size
        out_h, out_w = (_output_side(x.shape[2 + i], conv, i) for i in (0, 1))
        total += 2.0 * x.shape[0] * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw * out_h * out_w
    return total


def _output_side(size, conv, axis):
    if conv.padding == "same":
        return size
    padding = 0 if conv.padding == "valid" else conv.padding[axis]
    return ops.conv_output_size(size, conv.kernel_size[axis], conv.stride[axis], padding, conv.dilation[axis])


def build_workloads(spec: NetSpec, dtype, n: int, methods, torch, check: bool = True) -> list[Workload]:
    """The rows of one (net, dtype, N) group, with minicam's and torch's callables;
    check=True also compares the two frameworks' results (Workload.agreement)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(1)
    model = spec.build(dtype)
    x = single_instance(rng, n, size=spec.size).images.astype(dtype)
    params = list(model.parameters())
    with no_grad():
        classes = model(Tensor(x)).shape[1]
    v = rng.standard_normal((n, classes)).astype(dtype)
    calls = conv_layers(model, x)
    flops = conv_flops(calls)
    conv_covectors = [rng.standard_normal(model_output_shape(x_in, conv)).astype(dtype) for x_in, conv in calls]

    def forward():
        with no_grad():
            return model(Tensor(x))

    def forward_backward():
        inp = Tensor(x, requires_grad=True)
        return grad(model(inp), [inp] + params, grad_outputs=Tensor(v))

    def convs_forward():
        with no_grad():
            return [_conv(Tensor(x_in), conv) for x_in, conv in calls]

    def convs_forward_backward():
        out = []
        for (x_in, conv), cov in zip(calls, conv_covectors):
            inp = Tensor(x_in, requires_grad=True)
            weights = [p for p in (conv.weight, conv.bias) if p is not None]
            out.append(grad(_conv(inp, conv), [inp] + weights, grad_outputs=Tensor(cov)))
        return out

    rows = [Workload("forward", forward, conv_flops=flops),
            Workload("forward+backward", forward_backward, conv_flops=3 * flops),
            Workload("convs forward", convs_forward, conv_flops=flops),
            Workload("convs forward+backward", convs_forward_backward, conv_flops=3 * flops)]
    for method in methods:
        rows.append(Workload(f"cam {method}", lambda method=method: explain(model, x, method, spec.layer)))
    if torch is not None:
        _add_torch(rows, torch, model, x, v, calls, conv_covectors, spec.layer, check)
    return rows


def model_output_shape(x, conv):
    return (x.shape[0], conv.out_channels, _output_side(x.shape[2], conv, 0), _output_side(x.shape[3], conv, 1))


def _conv(x, conv):
    return ops.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _add_torch(rows, torch, model, x, v, calls, conv_covectors, layer, check):
    """Fill in the torch callables of `rows`, and check that both frameworks compute the same."""
    F = torch.nn.functional
    twin = torch_twin(model, torch)
    tx, tv = torch.from_numpy(x), torch.from_numpy(v)
    tparams = list(twin.parameters())
    tcalls = [(torch.from_numpy(x_in), _torch_conv_args(conv, torch)) for x_in, conv in calls]
    tcovectors = [torch.from_numpy(c) for c in conv_covectors]

    def forward():
        with torch.no_grad():
            return twin(tx)

    def forward_backward():
        inp = tx.clone().requires_grad_(True)
        return torch.autograd.grad(twin(inp), [inp] + tparams, grad_outputs=tv)

    def convs_forward():
        with torch.no_grad():
            return [F.conv2d(x_in, *args) for x_in, args in tcalls]

    def convs_forward_backward():
        out = []
        for (x_in, args), cov in zip(tcalls, tcovectors):
            inp = x_in.clone().requires_grad_(True)
            weights = [t for t in args[:2] if t is not None]
            out.append(torch.autograd.grad(F.conv2d(inp, *args), [inp] + weights, grad_outputs=cov))
        return out

    by_name = {row.name: row for row in rows}
    by_name["forward"].torch = forward
    by_name["forward+backward"].torch = forward_backward
    by_name["convs forward"].torch = convs_forward
    by_name["convs forward+backward"].torch = convs_forward_backward
    if check:
        by_name["forward"].agreement = _relative_difference(by_name["forward"].minicam().data, forward().numpy())
    for method, formula in torch_maps(torch).items():
        row = by_name.get(f"cam {method}")
        if row is None:
            continue
        row.torch = lambda formula=formula: torch_explain(torch, twin, tx, layer, formula)
        if check:
            row.agreement = float(np.max(np.abs(row.minicam() - row.torch().numpy())))


def _torch_conv_args(conv, torch):
    """F.conv2d's (weight, bias, stride, padding, dilation, groups) for a minicam Conv2d."""
    bias = None if conv.bias is None else torch.from_numpy(conv.bias.data).requires_grad_(True)
    weight = torch.from_numpy(conv.weight.data).requires_grad_(True)
    return weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups


def _relative_difference(a, b) -> float:
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(a - b)))


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


def _load_average():
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
    started, load_at_start = time.perf_counter(), _load_average()
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
    info["load_average_at_end"] = _load_average()
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
        "targets": targets(rows),
    }


def targets(rows) -> list:
    """The goals of the speed work, checked against this run's medians."""
    checks = []
    for r in rows:
        if r["ratio"] is None:
            continue
        if r["workload"] == "forward+backward" and r["net"] == "lesson" and r["dtype"] == "float32" and r["N"] == 32:
            checks.append({"goal": "lesson CNN forward+backward, float32, N=32: time <= 1.5x torch",
                           "value": r["ratio"], "met": r["ratio"] <= 1.5})
        if r["workload"].startswith("cam "):
            checks.append({"goal": f"{r['workload']} {r['net']} {r['dtype']} N={r['N']}: time <= 1.5x torch",
                           "value": r["ratio"], "met": r["ratio"] <= 1.5})
    for r in rows:
        if r.get("memory_ratio") is not None:
            checks.append({"goal": f"{r['workload']} {r['net']} {r['dtype']} N={r['N']}: peak RSS <= 2x torch",
                           "value": r["memory_ratio"], "met": r["memory_ratio"] <= 2.0})
    return checks


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
    if results["targets"]:
        met = sum(t["met"] for t in results["targets"])
        lines += ["", f"Targets met: {met} of {len(results['targets'])}.", ""]
        missed = [t for t in results["targets"] if not t["met"]]
        lines += [f"- missed: {t['goal']} (measured {t['value']:.2f})" for t in missed]
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


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {value}")
    return value


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
    parser.add_argument("--batch-sizes", type=_list("batch size", convert=_positive), default=(1, 32),
                        help="comma-separated (default: 1,32)")
    parser.add_argument("--methods", type=_list("method", METHODS), default=tuple(METHODS),
                        help="CAM methods to time, comma-separated (default: all)")
    parser.add_argument("--repeats", type=_positive, help="rounds of the round-robin (default: 15; --quick: 2)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch columns even if torch is installed")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_arguments([] if argv is None else list(argv))
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
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "bench.md").write_text(table)
    print(json.dumps(results, indent=1) if args.json else table)
    return 0
