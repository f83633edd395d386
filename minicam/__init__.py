"""minicam: class activation maps from first principles, in NumPy.

The public API:
  minicam.Tensor, minicam.grad, minicam.no_grad, minicam.enable_grad   the autograd
  minicam.ops        differentiable operations with torch.nn.functional's names
  minicam.nn         layers with torch.nn's names and state_dict keys
  minicam.optim      SGD and Adam
  minicam.explain    a CAM method's map at the input's size (minicam.cam.explain)
  minicam.cam        capture, METHODS, conventions; minicam.metrics, minicam.viz,
  minicam.data, minicam.models, minicam.interop, minicam.conformance
"""
from minicam.autograd import Tensor, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled
from minicam import ops
from minicam.cam.explain import explain

__version__ = "0.1.0"
__all__ = ["Tensor", "grad", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled", "ops", "explain"]
