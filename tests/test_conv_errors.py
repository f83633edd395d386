"""Bad input to unfold, fold, conv2d and the pools gets a clear error, never a wrong number.

Each row: the call, the exception, words the message must contain (it names
the op, says what was wrong and what to do), and whether torch refuses the
same input too (so minicam refuses nothing that torch accepts; rows marked
False are the documented NotImplementedErrors and minicam's stricter checks).
"""
import numpy as np
import pytest

from minicam import ops
from torch_required import require_torch

torch = require_torch()
F = torch.nn.functional

rng = np.random.default_rng(0)
image = rng.standard_normal((1, 3, 5, 5))
weight = rng.standard_normal((2, 3, 3, 3))


def t(a):
    return torch.from_numpy(np.asarray(a))


# (id, minicam call, torch call or None, exception, message pattern)
ROWS = [
    # --- conv2d -------------------------------------------------------------
    ("conv2d rank 2", lambda: ops.conv2d(image[0, 0], weight), lambda: F.conv2d(t(image[0, 0]), t(weight)),
     ValueError, r"conv2d: expected a 4-D \(N, C, H, W\) batch or a 3-D \(C, H, W\) image, got shape \(5, 5\)"),
    ("conv2d rank 5", lambda: ops.conv2d(image[None], weight), lambda: F.conv2d(t(image[None]), t(weight)),
     ValueError, r"conv2d: expected a 4-D .* got shape \(1, 1, 3, 5, 5\)"),
    ("conv2d weight rank", lambda: ops.conv2d(image, weight[0]), lambda: F.conv2d(t(image), t(weight[0])),
     ValueError, r"conv2d: weight must be 4-D \(K, C, kh, kw\), got shape \(3, 3, 3\)"),
    ("conv2d channel mismatch", lambda: ops.conv2d(image, weight[:, :2]), lambda: F.conv2d(t(image), t(weight[:, :2])),
     ValueError, r"conv2d: the input has C = 3 channels \(shape \(1, 3, 5, 5\)\) but the weight .*\(2, 2, 3, 3\) expects C = 2"),
    ("conv2d kernel larger than padded input", lambda: ops.conv2d(image[:, :, :2], weight),
     lambda: F.conv2d(t(image[:, :, :2]), t(weight)),
     ValueError, r"conv2d: the kernel height 3 .* larger than the padded input height 2 \+ 2\*0 = 2"),
    ("conv2d dilated kernel too large", lambda: ops.conv2d(image, weight, dilation=4, padding=1),
     lambda: F.conv2d(t(image), t(weight), dilation=4, padding=1),
     ValueError, r"conv2d: the kernel height 3 \(dilation 4, so it spans 9 pixels\) is larger than the padded input height 5 \+ 2\*1 = 7"),
    ("conv2d groups", lambda: ops.conv2d(image, weight, groups=3), None,
     NotImplementedError, r"conv2d: groups=3 is not supported, only groups=1"),
    ("conv2d bias shape", lambda: ops.conv2d(image, weight, np.zeros(3)), lambda: F.conv2d(t(image), t(weight), t(np.zeros(3))),
     ValueError, r"conv2d: bias must have shape \(K,\) = \(2,\) .* got \(3,\)"),
    ("conv2d dtype mismatch", lambda: ops.conv2d(image.astype(np.float32), weight),
     lambda: F.conv2d(t(image.astype(np.float32)), t(weight)),
     TypeError, r"conv2d: input is float32 but weight is float64"),
    ("conv2d padding word", lambda: ops.conv2d(image, weight, padding="full"), lambda: F.conv2d(t(image), t(weight), padding="full"),
     ValueError, r"conv2d: padding must be an int, a pair, 'valid' or 'same', got 'full'"),
    ("conv2d same with stride", lambda: ops.conv2d(image, weight, padding="same", stride=2),
     lambda: F.conv2d(t(image), t(weight), padding="same", stride=2),
     ValueError, r"conv2d: padding='same' needs stride 1"),
    ("conv2d negative padding", lambda: ops.conv2d(image, weight, padding=-1), lambda: F.conv2d(t(image), t(weight), padding=-1),
     ValueError, r"conv2d: padding must be non-negative, got -1"),
    ("conv2d zero stride", lambda: ops.conv2d(image, weight, stride=0), lambda: F.conv2d(t(image), t(weight), stride=0),
     ValueError, r"conv2d: stride must be positive, got 0"),
    ("conv2d stride triple", lambda: ops.conv2d(image, weight, stride=(1, 1, 1)), lambda: F.conv2d(t(image), t(weight), stride=(1, 1, 1)),
     TypeError, r"conv2d: stride must be an int or a pair of ints \(height, width\), got \(1, 1, 1\)"),
    ("conv2d float stride", lambda: ops.conv2d(image, weight, stride=1.5), lambda: F.conv2d(t(image), t(weight), stride=1.5),
     TypeError, r"conv2d: stride must be an int or a pair of ints"),
    # --- unfold / fold --------------------------------------------------------
    ("unfold rank", lambda: ops.unfold(image[0, 0], 2), lambda: F.unfold(t(image[0, 0]), 2),
     ValueError, r"unfold: expected a 4-D \(N, C, H, W\) batch or a 3-D \(C, H, W\) image, got shape \(5, 5\)"),
    ("unfold kernel too large", lambda: ops.unfold(image, (6, 2)), lambda: F.unfold(t(image), (6, 2)),
     ValueError, r"unfold: the kernel height 6 .* larger than the padded input height 5"),
    ("unfold zero dilation", lambda: ops.unfold(image, 2, dilation=0), lambda: F.unfold(t(image), 2, dilation=0),
     ValueError, r"unfold: dilation must be positive, got 0"),
    ("fold rank", lambda: ops.fold(image, (5, 5), 2), lambda: F.fold(t(image), (5, 5), 2),
     ValueError, r"fold: expected a 3-D \(N, C\*kh\*kw, L\) or 2-D \(C\*kh\*kw, L\) input, got shape \(1, 3, 5, 5\)"),
    ("fold channels not a multiple of kh*kw", lambda: ops.fold(np.zeros((1, 5, 16)), (5, 5), 2),
     lambda: F.fold(torch.zeros(1, 5, 16), (5, 5), 2),
     ValueError, r"fold: the input's dimension 1 \(5, shape \(1, 5, 16\)\) must be C\*kh\*kw, a multiple of kh\*kw = 2\*2 = 4"),
    ("fold wrong number of columns", lambda: ops.fold(np.zeros((1, 4, 15)), (5, 5), 2),
     lambda: F.fold(torch.zeros(1, 4, 15), (5, 5), 2),
     ValueError, r"fold: output_size \(5, 5\) .* has 4\*4 = 16 windows, but the input \(shape \(1, 4, 15\)\) has L = 15 columns"),
    # --- pools ------------------------------------------------------------------
    ("max_pool2d padding over half the kernel", lambda: ops.max_pool2d(image, 3, padding=2),
     lambda: F.max_pool2d(t(image), 3, padding=2),
     ValueError, r"max_pool2d: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"),
    ("max_pool2d padding with kernel 1", lambda: ops.max_pool2d(image, 1, padding=1), lambda: F.max_pool2d(t(image), 1, padding=1),
     ValueError, r"max_pool2d: padding \(1, 1\) must be at most half the kernel size \(1, 1\)"),
    ("max_pool2d kernel too large", lambda: ops.max_pool2d(image, (2, 6)), lambda: F.max_pool2d(t(image), (2, 6)),
     ValueError, r"max_pool2d: the kernel width 6 .* larger than the padded input width 5"),
    ("max_pool2d rank", lambda: ops.max_pool2d(image[0, 0], 2), lambda: F.max_pool2d(t(image[0, 0]), 2),
     ValueError, r"max_pool2d: expected a 4-D .* got shape \(5, 5\)"),
    ("max_pool2d ceil_mode", lambda: ops.max_pool2d(image, 2, ceil_mode=True), None,
     NotImplementedError, r"max_pool2d: ceil_mode=True is not supported"),
    ("max_pool2d return_indices", lambda: ops.max_pool2d(image, 2, return_indices=True), None,
     NotImplementedError, r"max_pool2d: return_indices=True is not supported"),
    ("max_pool2d zero stride", lambda: ops.max_pool2d(image, 2, stride=0), lambda: F.max_pool2d(t(image), 2, stride=0),
     ValueError, r"max_pool2d: stride must be positive, got 0"),
    ("avg_pool2d padding over half the kernel", lambda: ops.avg_pool2d(image, 2, padding=(0, 2)),
     lambda: F.avg_pool2d(t(image), 2, padding=(0, 2)),
     ValueError, r"avg_pool2d: padding \(0, 2\) must be at most half the kernel size \(2, 2\)"),
    ("avg_pool2d zero divisor", lambda: ops.avg_pool2d(image, 2, divisor_override=0),
     lambda: F.avg_pool2d(t(image), 2, divisor_override=0),
     ValueError, r"avg_pool2d: divisor_override must not be zero"),
    ("avg_pool2d ceil_mode", lambda: ops.avg_pool2d(image, 2, ceil_mode=True), None,
     NotImplementedError, r"avg_pool2d: ceil_mode=True is not supported"),
    ("adaptive rank", lambda: ops.adaptive_avg_pool2d(image[0, 0], 2), lambda: F.adaptive_avg_pool2d(t(image[0, 0]), 2),
     ValueError, r"adaptive_avg_pool2d: expected a 4-D .* got shape \(5, 5\)"),
    ("adaptive negative size", lambda: ops.adaptive_avg_pool2d(image, -1), lambda: F.adaptive_avg_pool2d(t(image), -1),
     ValueError, r"adaptive_avg_pool2d: output_size must be non-negative, got \(-1, -1\)"),
    ("adaptive three sizes", lambda: ops.adaptive_avg_pool2d(image, (1, 2, 3)), lambda: F.adaptive_avg_pool2d(t(image), (1, 2, 3)),
     TypeError, r"adaptive_avg_pool2d: output_size must be an int or a pair \(OH, OW\), got \(1, 2, 3\)"),
    # torch returns NaN here (a mean over nothing); minicam refuses
    ("adaptive empty input", lambda: ops.adaptive_avg_pool2d(np.zeros((1, 1, 0, 3)), 1), None,
     ValueError, r"adaptive_avg_pool2d: the input's height and width must be non-zero"),
    # --- the shared formula -----------------------------------------------------
    ("conv_output_size empty", lambda: ops.conv_output_size(2, 3), None,
     ValueError, r"conv_output_size: the kernel size 3 .* larger than the padded input size 2 \+ 2\*0 = 2: "
                 r"the output would be empty; use a larger input, a smaller kernel_size or dilation, or more padding"),
]


@pytest.mark.parametrize("call, torch_call, error, pattern", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_gets_a_clear_error(call, torch_call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
    if torch_call is not None:
        with pytest.raises(Exception):
            torch_call()


def test_accepted_spellings_of_the_arguments_match_torch():
    """What torch accepts, minicam accepts too: pairs as lists, stride=None or [], numpy ints."""
    x = torch.from_numpy(image)
    np.testing.assert_array_equal(ops.max_pool2d(image, [2, 2], stride=[]).data, F.max_pool2d(x, [2, 2], stride=[]).numpy())
    np.testing.assert_array_equal(ops.max_pool2d(image, np.int64(2)).data, F.max_pool2d(x, 2).numpy())
    np.testing.assert_array_equal(ops.unfold(image, [2, 3], stride=[1, 2]).data, F.unfold(x, [2, 3], stride=[1, 2]).numpy())
    np.testing.assert_array_equal(ops.adaptive_avg_pool2d(image, (None, 2)).shape, (1, 3, 5, 2))
