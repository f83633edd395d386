"""minicam: class activation maps from first principles, in NumPy.

The public API:
  minicam.Tensor, minicam.grad, minicam.no_grad, minicam.enable_grad
  minicam.ops      differentiable operations with torch.nn.functional's names
  minicam.nn       layers with torch.nn's names and state_dict keys
  minicam.optim    SGD and Adam
"""
from minicam.autograd import Tensor, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled
from minicam import ops

__version__ = "0.1.0"
