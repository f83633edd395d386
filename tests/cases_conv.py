"""Op cases for unfold, fold, conv2d and the pools.

Geometry is drawn by hypothesis: N in 1..2, C and K in 1..3, kernels 1..3,
stride 1..2, padding 0..2, dilation 1..2, and H, W chosen so that the window
fits at least once (OH, OW >= 1) with spatial sizes of at most about 7.
Max pooling gets tie-free values (every window has a unique maximum) so that
finite differences and torch see the same subgradient; ties are tested
separately in test_pool_ties.py.
"""
from hypothesis import strategies as st

from minicam import ops
from op_cases import F, OpCase
from strategies import rng_from, seeds, tie_free, values


@st.composite
def window_geometry(draw, max_kernel=3, max_stride=2, max_padding=2, max_dilation=2, pool=False):
    """kernel_size, stride, padding, dilation (pairs) and the input's H, W.

    pool=True: padding <= kernel // 2 (torch's pooling rule).
    """
    kh, kw = draw(st.integers(1, max_kernel), label="kh"), draw(st.integers(1, max_kernel), label="kw")
    sh, sw = draw(st.integers(1, max_stride), label="sh"), draw(st.integers(1, max_stride), label="sw")
    dh, dw = draw(st.integers(1, max_dilation), label="dh"), draw(st.integers(1, max_dilation), label="dw")
    ph = draw(st.integers(0, kh // 2 if pool else max_padding), label="ph")
    pw = draw(st.integers(0, kw // 2 if pool else max_padding), label="pw")
    # the smallest side the window fits in is span - 2*padding (span = d(k-1)+1); add 0..2 to it
    low_h, low_w = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    H, W = draw(st.integers(low_h, low_h + 2), label="H"), draw(st.integers(low_w, low_w + 2), label="W")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (H, W)


def _maybe_int(pair):
    """Sometimes pass (3, 3) as 3: both spellings of torch's arguments get exercised."""
    return pair[0] if pair[0] == pair[1] else pair


def draw_unfold(data):
    (k, s, p, d, (H, W)) = data.draw(window_geometry(), label="geometry")
    N, C = data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 3), label="C")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, (N, C, H, W))], {"kernel_size": _maybe_int(k), "dilation": d, "padding": p, "stride": s}


def draw_fold(data):
    (k, s, p, d, (H, W)) = data.draw(window_geometry(), label="geometry")
    N, C = data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 3), label="C")
    rng = rng_from(data.draw(seeds(), label="seed"))
    OH, OW = (ops.conv_output_size(n, kn, sn, pn, dn) for n, kn, sn, pn, dn in zip((H, W), k, s, p, d))
    columns = values(rng, (N, C * k[0] * k[1], OH * OW))
    return [columns], {"output_size": (H, W), "kernel_size": k, "dilation": d, "padding": p, "stride": s}


def draw_conv2d(with_bias=True, string_padding=False):
    def draw(data):
        (k, s, p, d, (H, W)) = data.draw(window_geometry(), label="geometry")
        N = data.draw(st.integers(1, 2), label="N")
        C, K = data.draw(st.integers(1, 3), label="C"), data.draw(st.integers(1, 3), label="K")
        padding = p
        if string_padding:
            padding = data.draw(st.sampled_from(["same", "valid"]), label="padding")
            s = (1, 1) if padding == "same" else s  # torch allows 'same' only with stride 1
            if padding == "valid":  # no padding: the input must hold the whole window
                H, W = max(H, d[0] * (k[0] - 1) + 1), max(W, d[1] * (k[1] - 1) + 1)
        rng = rng_from(data.draw(seeds(), label="seed"))
        arrays = [values(rng, (N, C, H, W)), values(rng, (K, C) + k)]
        if with_bias:
            arrays.append(values(rng, (K,)))
        return arrays, {"stride": _maybe_int(s), "padding": padding, "dilation": d}

    return draw


def _grow_until_windows_see_the_image(size, kernel, stride, padding, dilation):
    """The smallest side >= size whose every window holds an in-image pixel.

    With dilation, a window can fall entirely into the padding (e.g. kernel 2,
    dilation 2, padding 1 on a side of 1: rows -1 and 1); max pooling then gives
    -inf, as in torch. test_pool_ties.py tests that; here values stay finite."""
    while True:
        count = ops.conv_output_size(size, kernel, stride, padding, dilation)
        windows = [[o * stride - padding + i * dilation for i in range(kernel)] for o in range(count)]
        if all(any(0 <= r < size for r in rows) for rows in windows):
            return size
        size += 1


def max_pool_geometry(data):
    """(N, C, H, W) and max_pool2d's keyword arguments, with every window seeing the image."""
    (k, s, p, d, (H, W)) = data.draw(window_geometry(pool=True), label="geometry")
    stride = data.draw(st.sampled_from([None, s]), label="stride or None")
    s = k if stride is None else s  # torch: stride None means stride = kernel_size
    H = _grow_until_windows_see_the_image(H, k[0], s[0], p[0], d[0])
    W = _grow_until_windows_see_the_image(W, k[1], s[1], p[1], d[1])
    N, C = data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 3), label="C")
    return (N, C, H, W), {"kernel_size": _maybe_int(k), "stride": stride, "padding": p, "dilation": d}


def draw_max_pool2d(data):
    shape, kwargs = max_pool_geometry(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [tie_free(rng, shape)], kwargs


def draw_avg_pool2d(data):
    (k, s, p, _, (H, W)) = data.draw(window_geometry(pool=True, max_dilation=1), label="geometry")
    N, C = data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 3), label="C")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, (N, C, H, W))], {
        "kernel_size": _maybe_int(k),
        "stride": data.draw(st.sampled_from([None, s]), label="stride or None"),
        "padding": p,
        "count_include_pad": data.draw(st.booleans(), label="count_include_pad"),
        "divisor_override": data.draw(st.sampled_from([None, None, 2, 7]), label="divisor_override"),
    }


def draw_adaptive_avg_pool2d(data):
    N, C = data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 3), label="C")
    H, W = data.draw(st.integers(1, 7), label="H"), data.draw(st.integers(1, 7), label="W")
    # 1 is global average pooling; 1..8 includes sizes that do not divide H (overlapping bins)
    # and sizes larger than H (repeated rows); None keeps the input's size.
    output_size = data.draw(st.one_of(st.just(1), st.integers(1, 8),
                                      st.tuples(st.one_of(st.none(), st.integers(1, 8)), st.integers(1, 8))),
                            label="output_size")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, (N, C, H, W))], {"output_size": output_size}


def draw_unbatched(draw_batched):
    """The same case on one (C, H, W) image (torch's unbatched form)."""

    def draw(data):
        arrays, kwargs = draw_batched(data)
        return [arrays[0][0]] + arrays[1:], kwargs

    return draw


CASES = [
    OpCase("unfold", ops.unfold, lambda x, **kw: F().unfold(x, **kw), draw_unfold),
    OpCase("fold", ops.fold, lambda x, **kw: F().fold(x, **kw), draw_fold),
    OpCase("conv2d", ops.conv2d, lambda x, w, b, **kw: F().conv2d(x, w, b, **kw), draw_conv2d()),
    OpCase("conv2d_no_bias", ops.conv2d, lambda x, w, **kw: F().conv2d(x, w, **kw), draw_conv2d(with_bias=False)),
    OpCase("conv2d_same_valid", ops.conv2d, lambda x, w, b, **kw: F().conv2d(x, w, b, **kw),
           draw_conv2d(string_padding=True)),
    OpCase("conv2d_unbatched", ops.conv2d, lambda x, w, b, **kw: F().conv2d(x, w, b, **kw), draw_unbatched(draw_conv2d())),
    OpCase("max_pool2d", ops.max_pool2d, lambda x, **kw: F().max_pool2d(x, **kw), draw_max_pool2d),
    OpCase("max_pool2d_unbatched", ops.max_pool2d, lambda x, **kw: F().max_pool2d(x, **kw), draw_unbatched(draw_max_pool2d)),
    OpCase("avg_pool2d", ops.avg_pool2d, lambda x, **kw: F().avg_pool2d(x, **kw), draw_avg_pool2d),
    OpCase("adaptive_avg_pool2d", ops.adaptive_avg_pool2d, lambda x, **kw: F().adaptive_avg_pool2d(x, **kw),
           draw_adaptive_avg_pool2d),
]
