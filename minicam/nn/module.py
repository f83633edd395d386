"""Module, Parameter, Sequential, Identity: the machinery every layer shares.

See minicam/nn/__init__.py for what differs from torch, on purpose.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from minicam.autograd import Tensor, float_dtype

# ----------------------------------------------------------------------------
# Reproducible randomness
# ----------------------------------------------------------------------------

_default_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the generator that layers use when they are given no `rng`."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def random_generator(rng, owner: str) -> np.random.Generator:
    """`rng` checked, or the default generator (reset by manual_seed) when it is None."""
    if rng is None:
        return _default_rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner}: rng must be an np.random.Generator (e.g. np.random.default_rng(0)), "
                        f"got {type(rng).__name__}")
    return rng


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

    @property
    def forward_hooks(self) -> tuple:
        """The forward hooks registered on this module (not its children), in order."""
        return tuple(self._forward_hooks.values())

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
        module = self
        for name in target.split(".") if target else ():  # walk the path, one child at a time (as torch)
            module = module._modules.get(name) if isinstance(module, Module) else None
            if module is None:
                valid = ", ".join(repr(name) for name, _ in self.named_modules(remove_duplicate=False) if name)
                raise AttributeError(f"{type(self).__name__} has no sub-module {target!r}; valid names: {valid or '(none)'}")
        return module

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
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays (model.state_dict(), or a torch "
                            f"state_dict converted with minicam.interop), got a {type(state_dict).__name__}")
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
        dtype = float_dtype(dtype, "Module.to")
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
