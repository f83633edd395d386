"""The table of op cases: every op, its torch twin, and how to draw its inputs.

An OpCase is one row. `draw(data)` returns (arrays, kwargs): the float64 input
arrays (every one is differentiated) and the non-tensor arguments. The same
`minicam` and `torch` callables are then called as fn(*tensors, **kwargs).

Flags:
  fd             also check against finite differences (float64); False only
                 where the inputs cannot be kept off kinks by construction
  double         check double backward too (default True: every op must
                 support exact higher-order derivatives)
  rtol64/rtol32  the tolerances (module opcheck explains the error measure)

The rows live in one file per op family (cases_*.py) and are joined here.
"""
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class OpCase:
    name: str
    minicam: Callable
    torch: Callable
    draw: Callable  # (hypothesis data) -> (list of arrays, dict of kwargs)
    fd: bool = True
    double: bool = True
    rtol64: float = 1e-10
    rtol32: float = 1e-5
    fd_rtol: float = 1e-6
    notes: str = field(default="")


def all_cases():
    import cases_core
    import cases_conv
    import cases_nnfunc

    return cases_core.CASES + cases_conv.CASES + cases_nnfunc.CASES


def T():
    """torch, imported only when a torch callable actually runs."""
    import torch

    return torch


def F():
    """torch.nn.functional, imported only when needed."""
    import torch.nn.functional

    return torch.nn.functional
