"""Workloads: what one row of the benchmark table times (forward, backward, convs, each CAM)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from minicam import nn, ops
from minicam.autograd import Tensor, grad, no_grad
from minicam.cam import explain
from minicam.data import single_instance

from minicam.bench.nets import NetSpec, torch_explain, torch_maps, torch_twin



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
