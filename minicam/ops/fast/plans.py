"""The one switch between the reading room and the fast wing: a Plan, and `plan()` to choose one.

    with minicam.ops.reading_room():          # every primitive runs its readable definition
        ...
    with minicam.ops.fast.plan(Plan(channels_last_max_pixels=0)):   # the fast wing, re-tuned
        ...

The plan in use is read when a primitive runs, forward or backward, so put the backward
pass inside the same `with` block as the forward pass to run both on one plan. Outside
any block the plan is Plan(): the fast wing with its tuned thresholds. Either way the
numbers agree (convolutions to rounding, max pooling exactly) and every backward is the
same ops, so derivatives of every order are exact on both.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Plan:
    """Which definitions the primitives run, and how the fast convolutions lay out their products.

    fast                       True: the tuned kernels of minicam/ops/fast/; False: the reading
                               room (each primitive's forward written next to its docstring).
    The convolution layouts (minicam/ops/fast/conv.py explains them):
    channels_last_max_pixels   output maps of at most this many pixels use channels-last columns
                               (one large product per chunk of images: small maps make tiny products) ...
    channels_last_strided      ... and so do strided convolutions (the other layout sorts them into phases) ...
    channels_last_min_bytes    ... but only when one pixel's C channels fill this many bytes
                               (a cache line: the copy into columns moves runs of C numbers)
    channels_last_chunk_bytes  channels-last columns for about this many bytes at a time (memory stays bounded)
    few_channels               fewer input channels than this: the per-element layout stacks the kernel
                               elements into columns in the forward pass (products of inner size C are short) ...
    many_elements              ... and in the backward passes too if the kernel has more elements than this
    column_bytes               the size of one chunk of stacked columns (it stays in the cache)
    """

    fast: bool = True
    channels_last_max_pixels: int = 64
    channels_last_strided: bool = True
    channels_last_min_bytes: int = 64
    channels_last_chunk_bytes: int = 2**22
    few_channels: int = 8
    many_elements: int = 9
    column_bytes: int = 2**20

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(field.default, bool):
                if not isinstance(value, bool):
                    raise TypeError(f"Plan: {field.name} must be True or False, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Plan: {field.name} must be an int, got {value!r}")
            elif value < 0:
                raise ValueError(f"Plan: {field.name} must be a non-negative int, got {value!r}")


_in_use = Plan()


def current_plan() -> Plan:
    """The Plan the primitives follow now."""
    return _in_use


def enabled() -> bool:
    """Whether the primitives run the fast wing's kernels now (False: the reading room)."""
    return _in_use.fast


@contextlib.contextmanager
def plan(chosen: Plan):
    """`with plan(Plan(...)):` runs the block on `chosen`; the previous plan comes back at its end."""
    if not isinstance(chosen, Plan):
        raise TypeError(f"plan: expected a minicam.ops.fast.Plan, got {type(chosen).__name__}; "
                        "e.g. plan(Plan(fast=False)), or use minicam.ops.reading_room()")
    global _in_use
    previous, _in_use = _in_use, chosen
    try:
        yield chosen
    finally:
        _in_use = previous


def reading_room():
    """`with minicam.ops.reading_room():` runs every primitive on its reading-room definition."""
    return plan(Plan(fast=False))
