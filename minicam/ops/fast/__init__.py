"""minicam.ops.fast: the fast wing. Tuned kernels under the reading room's primitives.

The reading room (minicam/ops/conv.py, pool.py, norm.py) is what to read: each primitive's
forward in a few lines of NumPy, its backward in ops, its math in the docstring. The same
forwards, laid out for speed, are here, and each primitive picks one of the two in one
visible line, `if fast.enabled(): return fast.<kernel>(...)`:

  conv.py    conv2d, conv_transpose2d, conv_weight: the forwards of Conv2dOp,
             ConvTranspose2dOp and ConvWeightOp in two layouts (per kernel element on
             views of the input; channels-last columns), chosen by shape
  pool.py    max_pool2d, max_pool2d_choice, window_gather, window_scatter: one pass per
             kernel element, the choice found only when a backward pass asks for it
  norm.py    BatchNormEvalOp: eval-mode batch_norm as one primitive instead of five ops
  plans.py   Plan (fast or reading room, and the thresholds of the convolution layouts),
             plan(Plan(...)) and reading_room() to choose one for a `with` block

Only forwards live here: every backward stays written in ops, so gradients of every
order are exact on both sides. tests/test_fast_wing.py checks every kernel, under plans
that force each layout, against the reading room (convolutions to 1e-12, max pooling
exactly, ties, NaN and inf included), forward, backward and double backward.

Imports go one way: the reading room imports this package; nothing here imports the
reading room (a Geometry is read by its field names).
"""
from minicam.ops.fast.plans import Plan, current_plan, enabled, plan, reading_room
from minicam.ops.fast.conv import conv2d, conv_transpose2d, conv_weight
from minicam.ops.fast.pool import max_pool2d, max_pool2d_choice, window_gather, window_scatter
from minicam.ops.fast.norm import BatchNormEvalOp
