"""minicam.optim: SGD and Adam with torch.optim's arguments and update rules.

An optimiser holds the parameters (in `param_groups`, a list of dicts: the
parameters and their hyper-parameters, as torch) and a `state` per parameter
(momentum buffers, moment estimates). `step()` reads each parameter's `.grad`
and updates `.data` in place, with NumPy only: an update is not part of any
graph. Parameters without a gradient are skipped, as in torch.

Typical loop, as in torch:
    optimizer = minicam.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        optimizer.zero_grad()
        loss = ops.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
"""
from __future__ import annotations

import math

import numpy as np

from minicam.autograd import Tensor, enable_grad


class Optimizer:
    """Base class: parameter groups, zero_grad, and step() calling `_update`
    once per parameter that has a gradient."""

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.state: dict = {}  # parameter -> its state dict (Tensors hash by identity)
        self.param_groups: list = []
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list; "
                             "pass model.parameters() of a model that has parameters")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add {'params': [...], optional hyper-parameters}; missing ones take the defaults."""
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for param in group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimise Tensors, got {type(param).__name__}")
            if not param.is_leaf:
                raise ValueError(f"{type(self).__name__} cannot optimise a non-leaf Tensor (shape {param.shape})")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in known for p in group["params"]) or len({id(p) for p in group["params"]}) < len(group["params"]):
            raise ValueError("some parameters appear more than once in the parameter groups")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (.grad = None, torch's default) before the next backward."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none or param.grad is None:
                    param.grad = None
                else:
                    param.grad = Tensor(np.zeros_like(param.data))

    def step(self, closure=None):
        """Update every parameter that has a gradient. `closure`, if given,
        re-computes the loss (with backward) and its value is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, param.grad.data, group, self.state.setdefault(param, {}))
        return loss

    def _update(self, param: Tensor, grad: np.ndarray, group: dict, state: dict) -> None:
        raise NotImplementedError


def _check_non_negative(value, name: str, owner: str) -> None:
    if not value >= 0.0:
        raise ValueError(f"{owner}: invalid {name} {value}; it must be >= 0")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as torch.optim.SGD.

    For each parameter p with gradient g (torch's documented algorithm):
      g <- -g                                   if maximize
      g <- g + weight_decay * p                 (L2 penalty)
      b <- g  at the first step,  else  b <- momentum * b + (1 - dampening) * g
      g <- g + momentum * b  if nesterov,  else  g <- b        (when momentum != 0)
      p <- p - lr * g
    Note that the first momentum buffer is g itself, not (1 - dampening) * g.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        for value, name in ((lr, "learning rate"), (momentum, "momentum"), (weight_decay, "weight_decay")):
            _check_non_negative(value, name, "SGD")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _update(self, param, grad, group, state):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * param.data
        momentum = group["momentum"]
        if momentum != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = np.array(g)  # a copy of g
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * g
            g = g + momentum * buffer if group["nesterov"] else buffer
        param.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), as torch.optim.Adam.

    For each parameter p with gradient g, at step t = 1, 2, ...:
      g <- -g                                   if maximize
      g <- g + weight_decay * p                 (L2 penalty, not AdamW's decoupled decay)
      m <- beta1 * m + (1 - beta1) * g          (first moment; m = 0 before step 1)
      v <- beta2 * v + (1 - beta2) * g^2        (second moment; v = 0 before step 1)
      v_max <- max(v_max, v);  use v_max instead of v   if amsgrad (Reddi et al. 2018)
      p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    The two factors (1 - beta^t) undo the bias of m and v towards their zero start.
    eps is added after the bias correction of sqrt(v), exactly as torch does.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False):
        for value, name in ((lr, "learning rate"), (eps, "epsilon"), (weight_decay, "weight_decay")):
            _check_non_negative(value, name, "Adam")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Adam: invalid betas[{i}] = {beta}; it must be in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _update(self, param, grad, group, state):
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param.data)
            state["exp_avg_sq"] = np.zeros_like(param.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param.data)
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * param.data
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)  # = beta1 m + (1 - beta1) g, in torch's (lerp) rounding
        v *= beta2
        v += (1 - beta2) * g * g
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = group["lr"] / (1 - beta1**t)
        denominator = np.sqrt(v) / math.sqrt(1 - beta2**t) + group["eps"]
        param.data -= step_size * (m / denominator)
