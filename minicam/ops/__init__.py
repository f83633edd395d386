"""minicam.ops: the differentiable operations, named and called as in torch.

One family per file, from the primitives up:
  elementwise.py  add, mul, div, exp, log, relu, sigmoid, tanh, softplus, where ...
  reduce.py       sum, mean, max, broadcast_to
  shape.py        reshape, flatten, permute, transpose, pad, index, cat, stack
  linalg.py       matmul, linear
  im2col.py       unfold / fold (im2col / col2im), each the other's backward
  conv.py         conv2d (a fused Conv2d; its slow twin conv2d_composite = pad -> unfold -> matmul)
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
from minicam.ops.im2col import conv_output_size, fold, unfold
from minicam.ops.conv import conv2d
from minicam.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from minicam.ops.softmax import cross_entropy, log_softmax, softmax
from minicam.ops.norm import batch_norm, dropout
from minicam.ops.resize import interpolate
