"""minicam.ops: the differentiable operations, named and called as in torch.

A primitive is a Function subclass named <Name>Op (MulOp, ReLUOp, Conv2dOp, ...): its forward
on NumPy arrays, its backward in ops. The layers in minicam.nn have the bare names (nn.ReLU,
nn.Conv2d), and the functions here torch.nn.functional's (relu, conv2d).

The reading room, one family per file, from the primitives up; each primitive's forward is a
few lines of NumPy next to its math:
  elementwise.py  add, mul, div, exp, log, relu, sigmoid, tanh, softplus, where, to_dtype ...
  reduce.py       sum, mean, max, broadcast_to
  shape.py        reshape, flatten, permute, transpose, pad, index, cat, stack
  linalg.py       matmul, linear
  im2col.py       unfold / fold (im2col / col2im), each the other's backward; the window
                  geometry (Geometry, conv_output_size, as_pair) that conv2d and the pools share
  conv.py         conv2d: Conv2dOp (unfold -> matmul), ConvTranspose2dOp, ConvWeightOp, each
                  the others' adjoint
  pool.py         max_pool2d (torch's choice of element, max_choice), avg_pool2d,
                  adaptive_avg_pool2d (global average pooling)
  softmax.py      softmax, log_softmax, cross_entropy
  norm.py         batch_norm, dropout
  resize.py       interpolate (bilinear, nearest, bicubic, area)

The fast wing, fast/ (minicam.ops.fast): tuned kernels that compute the same forwards as the
convolution and max-pooling primitives and eval-mode batch_norm, faster. Each of those
primitives picks one in one visible line, `if fast.enabled(): return fast.<kernel>(...)`,
following the Plan in use, the one switch:
  with minicam.ops.reading_room():                    # every primitive on its reading-room forward
  with minicam.ops.fast.plan(minicam.ops.fast.Plan(few_channels=0)):   # the fast wing, re-tuned
The default plan is the fast wing. Backwards are ops on both sides, so gradients of every
order are exact either way; tests/test_fast_wing.py checks the two against each other.
"""
from minicam.ops.elementwise import (
    abs, add, div, exp, log, mul, neg, pow, relu, sigmoid, softplus, sqrt, sub, tanh, to_dtype, where,
)
from minicam.ops.reduce import broadcast_to, max, mean, sum
from minicam.ops.shape import cat, concatenate, flatten, index, pad, permute, reshape, stack, transpose
from minicam.ops.linalg import linear, matmul
from minicam.ops.im2col import as_pair, conv_output_size, fold, unfold
from minicam.ops.conv import conv2d
from minicam.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from minicam.ops.softmax import cross_entropy, log_softmax, softmax
from minicam.ops.norm import batch_norm, dropout
from minicam.ops.resize import interpolate
from minicam.ops.fast import reading_room
