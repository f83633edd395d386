"""minicam.nn: layers with torch.nn's names, arguments, defaults and state_dict keys.

A `Module` owns Parameters (the weights it learns), buffers (NumPy arrays it
keeps but does not learn, like BatchNorm's running statistics) and
sub-Modules. Assigning one of them as an attribute registers it, in the order
of assignment, exactly as in torch, so the dotted names ("features.0.weight",
"layer1.0.bn1.running_mean") and the order of `state_dict()` are torch's, and

    model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})

loads the weights of the same architecture built in torch.

Differences from torch, on purpose:
  - buffers and state_dict values are NumPy arrays (torch: tensors);
  - `state_dict()` returns copies, so a saved state does not change when
    training continues (torch returns tensors that share memory);
  - `load_state_dict` checks every key before copying anything: on an error
    the model is unchanged, and the message lists all problems at once;
  - no devices: `to(dtype)` only converts between float32 and float64.

Randomness: `Conv2d`, `Linear` and `Dropout` take `rng`, an
`np.random.Generator`. Without one they draw from a module-level generator
seeded with 0, which `manual_seed(seed)` resets (torch.manual_seed's role), so
a script that builds a model twice after the same seed gets the same weights.
The initial weights follow torch's distributions, but not torch's random
stream: copy weights from torch with load_state_dict to compare.
"""
from __future__ import annotations

import math
from collections import OrderedDict, namedtuple

import numpy as np

from minicam import ops
from minicam.autograd import FLOAT_DTYPES, Tensor, as_tensor

# ----------------------------------------------------------------------------
# Reproducible randomness
# ----------------------------------------------------------------------------

_default_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the generator that layers use when they are given no `rng`."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def _generator(rng, owner: str) -> np.random.Generator:
    if rng is None:
        return _default_rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner}: rng must be an np.random.Generator (e.g. np.random.default_rng(0)), "
                        f"got {type(rng).__name__}")
    return rng


def _float_dtype(dtype, owner: str) -> np.dtype:
    """float64 by default; float32 on request; anything else is refused."""
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: dtype {dtype} is not supported; use np.float32 or np.float64")
    return dtype


# ----------------------------------------------------------------------------
# Parameter
# ----------------------------------------------------------------------------


class Parameter(Tensor):
    """A Tensor that a Module learns: requires_grad=True, and assigning it as a
    Module attribute registers it (named_parameters, state_dict, optimisers)."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


# ----------------------------------------------------------------------------
# Module
# ----------------------------------------------------------------------------


class RemovableHandle:
    """Returned by register_forward_hook; `.remove()` unregisters the hook
    (also usable as `with module.register_forward_hook(h):`)."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model, as torch.nn.Module.

    Subclasses call `super().__init__()` first, assign Parameters, buffers
    (register_buffer) and sub-Modules as attributes, and define `forward`.
    Calling the module runs `forward`, then the forward hooks.
    """

    # Buffers that an older state_dict may lack without counting as missing
    # (torch's BatchNorm accepts a state_dict without num_batches_tracked).
    _optional_buffers: tuple = ()

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dicts to exist.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # --- registration through attributes -----------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)) and "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() has run: "
                                 f"call super().__init__() first in {type(self).__name__}.__init__")
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} as parameter {name!r}: "
                                "wrap it as minicam.nn.Parameter(...) (or assign None)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} as sub-module {name!r} (a Module or None expected)")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            self._buffers[name] = _buffer_array(value, name)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when normal lookup fails: look in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters or name in self._buffers or name in self._modules:
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def _forget(self, name):
        """Remove `name` from every registry (before re-registering it elsewhere)."""
        self.__dict__.pop(name, None)
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers.discard(name)
        self._modules.pop(name, None)

    def _check_new_name(self, name, kind):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{kind} name must be a non-empty string without '.', got {name!r}")
        known = name in self._parameters or name in self._buffers or name in self._modules
        if name in self.__dict__ or (hasattr(type(self), name) and not known):
            raise KeyError(f"attribute {name!r} already exists in {type(self).__name__}; choose another {kind} name")

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected a Parameter or None, got {type(param).__name__}")
        self._check_new_name(name, "parameter")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Keep an array that is not learned (e.g. running statistics).
        persistent=False leaves it out of state_dict."""
        self._check_new_name(name, "buffer")
        self._forget(name)
        self._buffers[name] = _buffer_array(tensor, name)
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module or None, got {type(module).__name__}")
        self._check_new_name(name, "module")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # --- running -----------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} is missing the required 'forward' method")

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):  # a hook may remove itself
            replacement = hook(self, args, output)
            if replacement is not None:
                output = replacement
        return output

    def register_forward_hook(self, hook) -> RemovableHandle:
        """After each forward, call `hook(module, inputs_tuple, output)`; a
        non-None return value replaces the output. Returns a handle whose
        `.remove()` unregisters the hook."""
        if not callable(hook):
            raise TypeError(f"register_forward_hook: expected a callable, got {type(hook).__name__}")
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # --- walking the tree ----------------------------------------------------
    def named_children(self):
        """(name, module) for each direct sub-module, in registration order."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(dotted name, module) for this module ("") and every descendant,
        depth-first in pre-order (a parent before its children), as torch."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                child_prefix = prefix + ("." if prefix else "") + name
                yield from module.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        owners = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for owner_name, owner in owners:
            for name, value in getattr(owner, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield owner_name + ("." if owner_name else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(dotted name, Parameter), module by module in pre-order; a shared
        Parameter is listed once (under its first name)."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def get_submodule(self, target: str) -> "Module":
        """The sub-module with dotted name `target` ("" is the module itself)."""
        if target == "":
            return self
        modules = dict(self.named_modules(remove_duplicate=False))
        if target not in modules:
            valid = ", ".join(repr(name) for name in modules if name) or "(none)"
            raise AttributeError(f"{type(self).__name__} has no sub-module {target!r}; valid names: {valid}")
        return modules[target]

    def apply(self, fn):
        """Call fn(module) on every sub-module (children first) and on self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # --- state_dict ----------------------------------------------------------
    def _state_entries(self, prefix: str = ""):
        """(key, owning module, attribute name) for every state_dict entry, in
        torch's order: per module in pre-order, its parameters then its
        persistent buffers. Shared modules and parameters appear under every
        name, as in torch."""
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, self, name
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                yield prefix + name, self, name
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_entries(prefix + name + ".")

    def _state_array(self, name: str) -> np.ndarray:
        """The array behind parameter or buffer `name` (shared, not a copy)."""
        if name in self._parameters:
            return self._parameters[name].data
        return self._buffers[name]

    def state_dict(self, *, prefix: str = "") -> OrderedDict:
        """An OrderedDict {dotted name: NumPy array (a copy)} with torch's keys and order."""
        return OrderedDict((key, np.array(owner._state_array(name))) for key, owner, name in self._state_entries(prefix))

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays keyed as torch's state_dict into the parameters and buffers.

        Values may be NumPy arrays (e.g. `v.numpy()` of a torch state_dict),
        minicam Tensors or anything np.asarray accepts; they are cast to the
        dtype of the parameter or buffer they are copied into. Every key is
        checked first: missing and unexpected keys (when strict) and shape
        mismatches (always) are reported together, and then nothing is copied.
        Returns (missing_keys, unexpected_keys) like torch.
        """
        targets = OrderedDict()  # key -> the array to copy into
        optional = set()  # keys an older state_dict may lack (BatchNorm's num_batches_tracked)
        for key, owner, name in self._state_entries():
            targets[key] = owner._state_array(name)
            if name in owner._optional_buffers:
                optional.add(key)
        missing = [key for key in targets if key not in state_dict and key not in optional]
        unexpected = [key for key in state_dict if key not in targets]
        problems, copies = [], []
        for key, value in state_dict.items():
            if key not in targets:
                continue
            value = _as_plain(value)
            if value.dtype.kind not in "biuf":
                problems.append(f"{key!r}: a value of dtype {value.dtype} cannot be loaded; give a numeric array")
            elif value.shape != targets[key].shape:
                problems.append(f"size mismatch for {key!r}: the state_dict has shape {value.shape}, "
                                f"the model has shape {targets[key].shape}")
            else:
                copies.append((targets[key], value))
        if strict:
            problems += [f"missing key {key!r} (the model expects shape {targets[key].shape})" for key in missing]
            problems += [f"unexpected key {key!r} (shape {_as_plain(state_dict[key]).shape})" for key in unexpected]
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__} (nothing was loaded):\n  "
                               + "\n  ".join(problems))
        for target, value in copies:
            np.copyto(target, value, casting="unsafe")  # in place: Parameters keep their identity
        return IncompatibleKeys(missing, unexpected)

    # --- modes, gradients, dtypes ----------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (True) or evaluation mode (False) on every sub-module."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be True or False, got {mode!r}")
        self.training = mode
        for module in self.children():  # each child's own train(), as torch (a subclass may extend it)
            module.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter (.grad = None, as torch's default)."""
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad = Tensor(np.zeros_like(param.data))

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def to(self, dtype) -> "Module":
        """Convert parameters (and their gradients) and float buffers to `dtype`,
        in place: Parameter objects keep their identity. Integer buffers stay."""
        dtype = _float_dtype(dtype, "Module.to")
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            if param.grad is not None:
                param.grad = Tensor(param.grad.data.astype(dtype))
        for module in self.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.dtype.kind == "f":
                    module._buffers[name] = buffer.astype(dtype)
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # --- printing --------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's settings, shown between the parentheses of its repr."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        children = [f"({name}): " + repr(module).replace("\n", "\n  ") for name, module in self._modules.items()]
        if not children and len(lines) <= 1:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines + children) + "\n)"


def _buffer_array(value, name):
    """A buffer is a NumPy array (float buffers float32/64, counters int64) or None.
    An array is stored as given, not copied (as torch), so in-place updates work."""
    if value is None:
        return None
    array = np.asarray(value.data if isinstance(value, Tensor) else value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"buffer {name!r}: expected a numeric array, got dtype {array.dtype}")
    return array


def _as_plain(value) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


# ----------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------


class Sequential(Module):
    """Modules applied one after the other: Sequential(a, b, c) names them
    "0", "1", "2"; Sequential(OrderedDict(name=module, ...)) keeps the names."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (dict, OrderedDict)):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(args):
                self.add_module(str(index), module)

    def forward(self, input):
        for module in self:
            input = module(input)
        return input

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        """seq[i] is the i-th module; seq[a:b] a Sequential keeping the names."""
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[self._position(index)][1]

    def __setitem__(self, index: int, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: can only hold Modules, got {type(module).__name__}")
        self._modules[list(self._modules)[self._position(index)]] = module

    def _position(self, index) -> int:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"Sequential: indices must be integers or slices, not {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"Sequential: index {index} is out of range for {len(self)} modules")
        return int(index) % len(self)

    def append(self, module) -> "Sequential":
        self.add_module(str(len(self)), module)
        return self


class Identity(Module):
    """y = x. Accepts and ignores any constructor arguments, as torch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


# ----------------------------------------------------------------------------
# Helpers shared by the layers
# ----------------------------------------------------------------------------


def _pair(value, name: str, owner: str) -> tuple:
    """torch's convention: an int n means (n, n) for (height, width)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{owner}: {name} must be an int or a pair of ints (height, width), got {value!r}")


def _uniform_init(rng, fan_in: int, shape: tuple, dtype) -> np.ndarray:
    """torch's default for Linear and Conv2d weights and biases.

    torch calls kaiming_uniform_(weight, a=sqrt(5)): gain = sqrt(2 / (1 + a^2))
    = sqrt(1/3), bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in); the bias
    uses the same bound. So both are U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _checked_input(layer: Module, input, ndims, axis: int, size: int, layout: str, like) -> Tensor:
    """The input as a Tensor, after checking its rank (in `ndims`, or any rank
    >= 1 for None), its size along `axis` and its dtype (equal to the layer's
    `like` array), with an error that names the layer and says what to do."""
    input = as_tensor(input)
    rank_ok = input.ndim >= 1 if ndims is None else input.ndim in ndims
    if not rank_ok or input.shape[axis] != size:
        raise ValueError(f"{layer!r} expects input of shape {layout}, got shape {input.shape}")
    if like is not None and input.dtype != like.dtype:
        raise TypeError(f"{layer!r}: the input is {input.dtype} but the layer is {like.dtype}; convert the input "
                        f"(x.astype(np.{like.dtype})) or the model (model.float() / model.double())")
    return input


# ----------------------------------------------------------------------------
# Layers with parameters
# ----------------------------------------------------------------------------


class Linear(Module):
    """y = x @ weight^T + bias, as torch.nn.Linear.

    weight: (out_features, in_features)   bias: (out_features,)
    input: (..., in_features)  ->  output: (..., out_features)
    Both drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)) (torch's default).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None, rng=None):
        super().__init__()
        dtype, rng = _float_dtype(dtype, "Linear"), _generator(rng, "Linear")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(_uniform_init(rng, in_features, (out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(_uniform_init(rng, in_features, (out_features,), dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        input = _checked_input(self, input, None, -1, self.in_features,
                               f"(..., {self.in_features})", self.weight)
        return ops.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution (a cross-correlation, like every framework), as torch.nn.Conv2d.

    weight: (K, C // groups, kh, kw) with K = out_channels, C = in_channels
    bias: (K,)   input: (N, C, H, W) or (C, H, W)  ->  output: (N, K, OH, OW)
    Both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C // groups * kh * kw
    (torch's default). Only padding_mode="zeros" is implemented; groups > 1 is
    accepted here (the weights and state_dict have torch's shapes) but
    ops.conv2d computes groups=1 only, and says so when called.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", dtype=None, rng=None):
        super().__init__()
        dtype, rng = _float_dtype(dtype, "Conv2d"), _generator(rng, "Conv2d")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} is not implemented; only 'zeros'")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding", "Conv2d")
        self.dilation = _pair(dilation, "dilation", "Conv2d")
        self.padding_mode = padding_mode
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(_uniform_init(rng, fan_in, (out_channels, in_channels // groups, kh, kw), dtype))
        if bias:
            self.bias = Parameter(_uniform_init(rng, fan_in, (out_channels,), dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        input = _checked_input(self, input, (3, 4), -3, self.in_channels,
                               f"(N, {self.in_channels}, H, W) or ({self.in_channels}, H, W)", self.weight)
        return ops.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        # torch's format: only the settings that differ from the defaults, after stride
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy 2015), as torch.nn.BatchNorm2d.

    y = (x - mean) / sqrt(var + eps) * weight + bias, per channel C.
    Training: mean and var of the batch (var biased, divided by n = N*H*W), and
    running_mean <- (1 - m) running_mean + m * mean,
    running_var  <- (1 - m) running_var  + m * var * n / (n - 1)   (unbiased),
    with m = momentum, or m = 1 / num_batches_tracked when momentum is None
    (a cumulative average). Evaluation: the running statistics.
    weight, bias, running_mean, running_var: (C,);  num_batches_tracked: int64 scalar.
    `bias=False` (keyword-only, torch 2.13) keeps the weight and drops the bias.
    """

    _optional_buffers = ("num_batches_tracked",)  # torch also loads state_dicts without it

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None, *, bias: bool = True):
        super().__init__()
        dtype = _float_dtype(dtype, "BatchNorm2d")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.register_parameter("weight", weight)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype=dtype)) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, input):
        like = self.weight if self.weight is not None else self.running_mean
        input = _checked_input(self, input, (4,), 1, self.num_features, f"(N, {self.num_features}, H, W)", like)
        # torch's rule for the running-average factor
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1  # in place: the int64 array is the buffer
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        # Batch statistics when training, and in evaluation when there are no running statistics.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # The running statistics are updated (by batch_norm, in place) only when tracked.
        update = not self.training or self.track_running_stats
        return ops.batch_norm(input, self.running_mean if update else None, self.running_var if update else None,
                              self.weight, self.bias, training=use_batch_stats, momentum=factor, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


# ----------------------------------------------------------------------------
# Layers without parameters: thin wrappers around minicam.ops
# ----------------------------------------------------------------------------


class ReLU(Module):
    """y = max(x, 0). `inplace` is accepted for torch compatibility and ignored:
    minicam never overwrites its input (an in-place ReLU would also overwrite
    activations captured by a hook, a known trap in torch CAM libraries)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return ops.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """y = 1 / (1 + e^-x)."""

    def forward(self, input):
        return ops.sigmoid(input)


class Tanh(Module):
    """y = tanh x."""

    def forward(self, input):
        return ops.tanh(input)


class Softmax(Module):
    """y = softmax of x along `dim` (which must be given; torch's implicit dim is deprecated)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        if self.dim is None:
            raise ValueError("Softmax: dim is None; construct it with the dimension to normalise, e.g. Softmax(dim=1)")
        return ops.softmax(input, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return ops.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class MaxPool2d(Module):
    """The maximum of each kh x kw window; stride defaults to kernel_size.
    Gradient to the first maximum of a window in row-major order, as torch."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = kernel_size if stride is None else stride
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return ops.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean of each kh x kw window; stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, input):
        return ops.avg_pool2d(input, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                              count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size; AdaptiveAvgPool2d(1) is global
    average pooling, the layer that makes CAM possible (Zhou et al. 2016)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return ops.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by
    1 / (1 - p); in evaluation, y = x. The mask is drawn from `rng` (see
    manual_seed); `inplace` is accepted for torch compatibility and ignored."""

    def __init__(self, p: float = 0.5, inplace: bool = False, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability p must be between 0 and 1, got {p}")
        self.p, self.inplace = p, inplace
        self.rng = rng if rng is None else _generator(rng, "Dropout")

    def forward(self, input):
        rng = _default_rng if self.rng is None else self.rng  # looked up now: manual_seed may have replaced it
        return ops.dropout(input, self.p, self.training, generator=rng)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
