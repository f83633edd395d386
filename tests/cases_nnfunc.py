"""Op cases for softmax, log_softmax, cross_entropy, batch_norm, dropout and interpolate.

Only float arrays that are differentiated go in the first list a draw returns;
everything else (class indices, running statistics, masks' seeds, sizes) goes in
the kwargs, so both frameworks receive it unchanged.
"""
import math

import numpy as np
from hypothesis import strategies as st

from minicam import ops
from minicam.ops.norm import dropout_mask
from op_cases import F, OpCase, T
from strategies import positive, rng_from, seeds, shapes, tie_free, values

# ----------------------------------------------------------------------------
# softmax, log_softmax
# ----------------------------------------------------------------------------


def draw_softmax(data):
    shape = data.draw(shapes(1, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    # Logits in [-2, 2]: a gap of 8 (p near 1 - 3e-4) makes float32 derivatives lose ~1/(1 - p)
    # in relative accuracy (cancellation in y * (g - <g, y>)), for torch as well; huge logits
    # are tested in float64 in test_nnfunc_extra.py.
    return [values(rng, shape)], {"dim": dim}


# ----------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------


def _logits_shape(data):
    """(N, C), (N, C, d) or unbatched (C,)."""
    layout = data.draw(st.sampled_from(["(N, C)", "(N, C, d)", "(C,)"]), label="layout")
    n, c, d = (data.draw(st.integers(1, 4), label=s) for s in ("N", "C", "d"))
    return {"(N, C)": (n, c), "(N, C, d)": (n, c, d), "(C,)": (c,)}[layout]


def _loss_options(data, rng, classes):
    weight = rng.uniform(0.5, 2.0, classes) if data.draw(st.booleans(), label="weight") else None
    return {
        "weight": weight,
        "reduction": data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction"),
        "label_smoothing": data.draw(st.sampled_from([0.0, 0.1, 0.35]), label="label_smoothing"),
    }


def draw_cross_entropy(data):
    shape = _logits_shape(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    classes = shape[1] if len(shape) > 1 else shape[0]
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = rng.integers(0, classes, size=target_shape)
    # Ignored targets: torch's default ignore_index (-100) or a real class; one target always counts,
    # so that "mean" never divides by zero.
    ignore = data.draw(st.sampled_from(["none ignored", "-100", "last class"]), label="ignore")
    ignore_index = -100
    if ignore == "-100" and target.size > 1:
        target.flat[0] = -100
    elif ignore == "last class" and classes > 1:
        ignore_index = classes - 1
        target.flat[0] = 0
    kwargs = {"target": target, "ignore_index": ignore_index, **_loss_options(data, rng, classes)}
    return [values(rng, shape, -3.0, 3.0)], kwargs


def draw_cross_entropy_probabilities(data):
    """Class probabilities as targets: differentiated too (torch differentiates them as well)."""
    shape = _logits_shape(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    class_dim = 1 if len(shape) > 1 else 0
    probabilities = positive(rng, shape, 0.1, 1.0)
    probabilities = probabilities / probabilities.sum(axis=class_dim, keepdims=True)
    return [values(rng, shape, -3.0, 3.0), probabilities], _loss_options(data, rng, shape[class_dim])


def _torch_cross_entropy(x, *target, weight, **kwargs):
    target = target[0] if target else T().as_tensor(kwargs.pop("target"))  # probabilities or indices
    weight = None if weight is None else T().as_tensor(weight, dtype=x.dtype)
    return F().cross_entropy(x, target, weight, **kwargs)


def _minicam_cross_entropy(x, *target, **kwargs):
    target = target[0] if target else kwargs.pop("target")
    return ops.cross_entropy(x, target, **kwargs)


# ----------------------------------------------------------------------------
# batch_norm
# ----------------------------------------------------------------------------


def draw_batch_norm(training):
    def draw(data):
        if data.draw(st.booleans(), label="4-D"):
            shape = tuple(data.draw(st.integers(1, 3), label=s) for s in "NCHW")
        else:
            shape = (data.draw(st.integers(1, 4), label="N"), data.draw(st.integers(1, 3), label="C"))
        if training and np.prod(shape) // shape[1] < 3:
            # training needs 2 values per channel; with exactly 2 the output is +-1 whatever x is,
            # its derivatives are pure cancellation, meaningless in float32 (tested apart, in float64)
            shape = (3,) + shape[1:]
        rng = rng_from(data.draw(seeds(), label="seed"))
        channels = shape[1]
        # Training: distinct values (gaps >= 0.1), so no channel has a tiny variance, whose
        # 1/sigma^3 second derivative would make finite differences meaningless.
        x = tie_free(rng, shape, gap=0.1) + values(rng, shape, -0.02, 0.02) if training else values(rng, shape)
        affine = [values(rng, (channels,)), values(rng, (channels,))] if data.draw(st.booleans(), label="affine") else []
        kwargs = {
            "running_mean": values(rng, (channels,)),
            "running_var": positive(rng, (channels,)),
            "training": training,
            "momentum": data.draw(st.sampled_from([0.1, 0.5]), label="momentum"),
            "eps": data.draw(st.sampled_from([1e-5, 1e-3]), label="eps"),
        }
        return [x] + affine, kwargs

    return draw


def _minicam_batch_norm(x, *affine, running_mean, running_var, **kwargs):
    # fresh copies: a training call updates them in place, and each case runs several calls
    return ops.batch_norm(x, running_mean.copy(), running_var.copy(), *affine, **kwargs)


def _torch_batch_norm(x, *affine, running_mean, running_var, **kwargs):
    stats = [T().tensor(s, dtype=x.dtype) for s in (running_mean, running_var)]
    return F().batch_norm(x, *stats, *affine, **kwargs)


# ----------------------------------------------------------------------------
# dropout: the same mask on both sides (this checks the math, not the RNG)
# ----------------------------------------------------------------------------


def draw_dropout(data):
    shape = data.draw(shapes(1, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    kwargs = {
        "p": data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]), label="p"),
        "training": data.draw(st.booleans(), label="training"),
        "mask_seed": data.draw(seeds(), label="mask seed"),
    }
    return [values(rng, shape)], kwargs


def _minicam_dropout(x, p, training, mask_seed):
    return ops.dropout(x, p, training, generator=np.random.default_rng(mask_seed))


def _torch_dropout(x, p, training, mask_seed):
    """torch's own dropout where it is deterministic (eval, p = 0, p = 1). Otherwise
    torch's formula, x * mask / (1 - p), on minicam's mask: torch's random masks
    cannot be reproduced, so this checks the math of inverted dropout, not the RNG."""
    if not training or p in (0.0, 1.0):
        return F().dropout(x, p, training)
    keep = dropout_mask(tuple(x.shape), p, np.random.default_rng(mask_seed))
    return x * (T().as_tensor(keep, dtype=x.dtype) / (1 - p))


# ----------------------------------------------------------------------------
# interpolate: up, down, non-integer ratios, by size or by scale factor
# ----------------------------------------------------------------------------

SCALE_FACTORS = [0.5, 0.6, 0.75, 1 / 3, 1.0, 1.3, 1.5, 2.0, 2.5, 3.0]


def draw_interpolate(mode):
    def draw(data):
        n, c = data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 2), label="C")
        h, w = data.draw(st.integers(1, 5), label="H"), data.draw(st.integers(1, 5), label="W")
        rng = rng_from(data.draw(seeds(), label="seed"))
        kwargs = {"mode": mode}
        if mode in ("bilinear", "bicubic"):
            kwargs["align_corners"] = data.draw(st.booleans(), label="align_corners")
        if data.draw(st.booleans(), label="by size"):
            kwargs["size"] = (data.draw(st.integers(1, 8), label="OH"), data.draw(st.integers(1, 8), label="OW"))
        else:  # only factors that leave at least one pixel
            kwargs["scale_factor"] = tuple(
                data.draw(st.sampled_from([s for s in SCALE_FACTORS if math.floor(n_in * s) >= 1]), label=f"scale {axis}")
                for n_in, axis in ((h, "H"), (w, "W")))
            kwargs["recompute_scale_factor"] = data.draw(st.sampled_from([None, True]), label="recompute_scale_factor")
            unchanged = (math.floor(h * kwargs["scale_factor"][0]), math.floor(w * kwargs["scale_factor"][1])) == (h, w)
            if mode == "bicubic" and unchanged:
                # torch's bicubic BACKWARD copies the gradient when neither size changes, while its
                # forward still resamples with 1/scale_factor: its backward is then not the adjoint of
                # its forward (test_nnfunc_extra checks minicam against torch's forward Jacobian there).
                kwargs["recompute_scale_factor"] = True
        return [values(rng, (n, c, h, w))], kwargs

    return draw


def _torch_interpolate(x, **kwargs):
    return F().interpolate(x, **kwargs)


CASES = [
    OpCase("softmax", ops.softmax, lambda x, dim: F().softmax(x, dim), draw_softmax),
    OpCase("log_softmax", ops.log_softmax, lambda x, dim: F().log_softmax(x, dim), draw_softmax),
    OpCase("cross_entropy", _minicam_cross_entropy, _torch_cross_entropy, draw_cross_entropy),
    OpCase("cross_entropy_probabilities", _minicam_cross_entropy, _torch_cross_entropy,
           draw_cross_entropy_probabilities),
    OpCase("batch_norm_training", _minicam_batch_norm, _torch_batch_norm, draw_batch_norm(training=True)),
    OpCase("batch_norm_eval", _minicam_batch_norm, _torch_batch_norm, draw_batch_norm(training=False)),
    OpCase("dropout_fixed_mask", _minicam_dropout, _torch_dropout, draw_dropout,
           notes="same mask on both sides: checks the math, not the random number generator"),
] + [
    OpCase(f"interpolate_{mode}", ops.interpolate, _torch_interpolate, draw_interpolate(mode))
    for mode in ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
]
