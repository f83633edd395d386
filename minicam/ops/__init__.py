"""minicam.ops: the differentiable operations, named and called as in torch.

A primitive is a Function subclass named <Name>Op (MulOp, ReLUOp, Conv2dOp, ...): its forward
on NumPy arrays, its backward in ops. The layers in minicam.nn have the bare names (nn.ReLU,
nn.Conv2d), and the functions here torch.nn.functional's (relu, conv2d).

One family per file, from the primitives up:
  elementwise.py  add, mul, div, exp, log, relu, sigmoid, tanh, softplus, where ...
  reduce.py       sum, mean, max, broadcast_to
  shape.py        reshape, flatten, permute, transpose, pad, index, cat, stack
  linalg.py       matmul, linear
  im2col.py       unfold / fold (im2col / col2im), each the other's backward
  conv.py         conv2d (a fused Conv2dOp; its slow twin conv2d_composite = pad -> unfold -> matmul)
  conv_kernels.py the NumPy kernels under the fused convolution (two layouts, chosen by shape)
  pool.py         max_pool2d, avg_pool2d, adaptive_avg_pool2d (global average pooling)
  softmax.py      softmax, log_softmax, cross_entropy
  norm.py         batch_norm, dropout
  resize.py       interpolate (bilinear, nearest, bicubic)
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
