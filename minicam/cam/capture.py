"""Capture a named layer's activations A and the gradient g = dy/dA of a score y.

Every CAM method starts here. Notation (used in every file of minicam.cam):
  A  the layer's output, (N, K, h, w): K feature maps of size h x w per image
  y  the score explained, one per image: the target class's logit by default
  g  dy/dA, the same shape as A

How: `layer_output`, the one place where minicam.cam touches a layer, records the
layer's output during one forward pass and may replace it. `capture` replaces it by
a NEW LEAF tensor holding the same numbers; everything above the layer is computed
from that leaf, so `minicam.grad(y, A)` gives dy/dA and walks only the layers above A.
The layers below A run without recording a graph at all (no_grad, switched back on
at the layer), since nothing below A is differentiated.

The model runs in eval mode during the capture (every flag is restored afterwards):
a batch-norm layer in training mode would mix the images of a batch (and update its
running statistics), and every map must be per image: a batch gives the same maps as
one image at a time.

Non-finite values are an error where they first appear, never a map (NonFiniteError):
the input (checked_images), the forward pass (check_forward names the parameter that
is not finite, or the first layer whose output is not although its input was), the
score, the gradients (Capture.gradients), and the raw map (maps.final_relu).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from minicam import ops
from minicam.autograd import Tensor, enable_grad, grad, no_grad, set_grad_enabled
from minicam.errors import NonFiniteError, count_non_finite, require_finite

SCORES = ("logit", "softmax", "exp")


# ----------------------------------------------------------------------------
# The inputs: images, a layer, the model's mode
# ----------------------------------------------------------------------------


def checked_images(x, what: str = "x") -> Tensor:
    """x as a Tensor, after checking that it is a finite batch of images (N, C, H, W)."""
    data = np.asarray(x.data if isinstance(x, Tensor) else x)
    if data.ndim != 4:
        raise ValueError(
            f"{what} must be a batch of images of shape (N, C, H, W); got shape {data.shape}. "
            "For one image of shape (C, H, W) use x[None]."
        )
    if data.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch (shape {data.shape})")
    tensor = x if isinstance(x, Tensor) else Tensor(data)
    require_finite(tensor.data, what, "a map of such an input would be meaningless: give finite images")
    return tensor


def find_layer(model, layer: str):
    """The submodule called `layer` (a name from model.named_modules())."""
    try:
        if isinstance(layer, str) and layer != "":
            return model.get_submodule(layer)
    except AttributeError:
        pass
    valid = ", ".join(repr(name) for name, _ in model.named_modules() if name)
    raise KeyError(f"no layer named {layer!r} in {type(model).__name__}; valid names: {valid}")


class evaluation_mode:
    """`with evaluation_mode(model):` runs in eval mode, then restores every module's flag."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        if any(flag for _, flag in self.flags):  # (a model already in eval mode is left alone)
            self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for module, flag in self.flags:
            if module.training != flag:
                module.training = flag
        return False


# ----------------------------------------------------------------------------
# A layer's output, recorded or replaced for the calls inside one block
# ----------------------------------------------------------------------------


class LayerOutput:
    """What `layer_output` saw: the layer's inputs and (possibly replaced) output of its last call."""

    def __init__(self, name):
        self.name, self.inputs, self.output, self.calls = name, None, None, 0

    def feature_maps(self) -> np.ndarray:
        """The output as (N, K, h, w) feature maps, or a clear error if the layer gave none."""
        if self.calls == 0:
            raise RuntimeError(f"layer {self.name!r} was not called during the forward pass; "
                               "choose a layer the model uses")
        if self.output.ndim != 4:
            raise ValueError(f"layer {self.name!r} outputs shape {self.output.shape}; CAM methods need "
                             "feature maps (N, K, h, w): choose a convolutional layer")
        return self.output.data


@contextlib.contextmanager
def layer_output(model, layer, replace=None):
    """`with layer_output(model, "features.relu3", replace) as seen: model(x)`.

    Inside the block the model runs in eval mode, and every call of the layer (a name
    in the model, or a module) records its inputs and output in `seen`; with `replace`,
    the layer's output is first replaced by replace(inputs, output). On leaving the
    block the hook is removed and the modules' train/eval flags are restored.
    """
    module = find_layer(model, layer) if isinstance(layer, str) else layer
    seen = LayerOutput(layer if isinstance(layer, str) else type(layer).__name__)

    def hook(mod, inputs, output):
        if not isinstance(output, Tensor):
            raise TypeError(f"layer {seen.name!r} returns a {type(output).__name__}, not a Tensor")
        if replace is not None:
            output = replace(inputs, output)
        seen.inputs, seen.output, seen.calls = inputs, output, seen.calls + 1
        return output

    with evaluation_mode(model), module.register_forward_hook(hook):
        yield seen


def output_with_layer_output(model, image, layer, copies: Tensor) -> Tensor:
    """model(image) for ONE image, with the layer's output replaced by P copies (P, K, h, w): the
    layers above run on the batch of copies, so the output has P rows, one per copy. The batch
    trick of Grad-CAM++'s diagonal derivatives and of Ablation-CAM (the caller sets the grad mode)."""
    with layer_output(model, layer, replace=lambda inputs, output: copies) as seen:
        output = model(Tensor(image))
    seen.feature_maps()
    if output.ndim < 1 or output.shape[0] != copies.shape[0]:
        raise ValueError(
            f"replacing the output of layer {layer!r} by {copies.shape[0]} copies gave a model output of shape "
            f"{tuple(output.shape)}, not one row per copy: the model's output does not depend on that layer "
            "(or mixes the images of a batch); choose a layer the score is computed from")
    return output


# ----------------------------------------------------------------------------
# Where a NaN or an infinity comes from
# ----------------------------------------------------------------------------

def overflow_fix(dtype) -> str:
    """What to do about an overflow in this dtype."""
    largest = f"{np.finfo(dtype).max:.1e}"
    if np.dtype(dtype) == np.float32:
        return (f"float32 holds numbers up to {largest}: compute in float64 (model.double() and "
                "x.astype(np.float64)), or scale the input down")
    return f"{np.dtype(dtype)} holds numbers up to {largest}: scale the input down"


def check_forward(model, x, *values) -> None:
    """Raise NonFiniteError, saying where the first NaN or infinity of model(x) comes from,
    unless every array of `values` (outputs of a forward pass on x) is finite."""
    if not any(count_non_finite(v) for v in values):
        return
    raise NonFiniteError(f"the forward pass is not finite: {forward_fault(model, x)}")


def forward_fault(model, x) -> str:
    """Where the first NaN or infinity of model(x) comes from, in one sentence: a parameter or
    buffer that holds one, or else the first layer (innermost, in the order the layers finish)
    whose output holds one."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    bad = [f"{name} ({count_non_finite(values.data if isinstance(values, Tensor) else values)})"
           for name, values in named if count_non_finite(values.data if isinstance(values, Tensor) else values)]
    if bad:
        return (f"the model's weights are not finite: {', '.join(bad)}; load finite weights (a NaN weight "
                "often comes from a training run that diverged)")
    first = {}

    def record(name):
        def hook(module, inputs, output):
            found = count_non_finite(output.data) if isinstance(output, Tensor) and not first else ""
            if found:
                finite_input = not any(count_non_finite(i.data) for i in inputs if isinstance(i, Tensor))
                first.update(name=name or "the model", kind=type(module).__name__, found=found, finite_input=finite_input)
        return hook

    with contextlib.ExitStack() as hooks, evaluation_mode(model), no_grad():
        for name, module in model.named_modules():
            hooks.enter_context(module.register_forward_hook(record(name)))
        model(Tensor(x.data if isinstance(x, Tensor) else x))
    if not first:
        return "the output is not finite although no layer's output was; " + overflow_fix(x.dtype)
    origin = ("although its input was finite: an overflow (or an invalid operation) in that layer"
              if first["finite_input"] else "and so does its input, computed outside any layer")
    return f"the output of layer {first['name']!r} ({first['kind']}) holds {first['found']} {origin}; {overflow_fix(x.dtype)}"


# ----------------------------------------------------------------------------
# Targets and scores
# ----------------------------------------------------------------------------


def target_classes(output: np.ndarray, target) -> np.ndarray:
    """The class explained for each image (N,): the predicted class for target=None, else the given ones."""
    n, num_classes = output.shape
    if target is None:
        return np.argmax(output, axis=1)
    if isinstance(target, (int, np.integer)):
        classes = np.full(n, int(target))
    else:
        classes = np.asarray(target)
        if classes.shape != (n,) or classes.dtype.kind not in "iu":
            raise ValueError(
                f"target must be None, an int, or one integer class per image ({n} of them); "
                f"got {target!r}"
            )
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if bad.size:
        raise ValueError(f"target class {int(bad[0])} is out of range: the model has {num_classes} classes (0 to {num_classes - 1})")
    return classes.astype(np.int64)


def class_scores(output: Tensor, target, score: str):
    """The score y of each image's target class: (scores (N,), classes (N,) or None, log_scale (N,)).

    target: None (the predicted class, argmax of the output), an int (the same
    class for every image), a sequence with one class per image, or a callable
    taking the output Tensor (N, classes) and returning one score per image (N,).
    score: "logit" (y = S, the pre-softmax output, as the papers use),
    "softmax" (y = the class probability), or "exp" (y = e^S, the form
    Grad-CAM++'s eq. 19 assumes). e^S would overflow for a large logit
    (S > 709 in float64, 88 in float32), so it is computed as e^(S - S0) with
    S0 the logit's value held constant: the true e^S divided by the positive
    constant e^(S0). Every derivative scales by that same per-image constant,
    so maps are unchanged up to that factor, and unchanged after normalisation.
    """
    n = output.shape[0]
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {SCORES}")
    if callable(target):
        if score != "logit":
            raise ValueError("with a callable target, the callable defines the score: leave score='logit'")
        scores = target(output)
        if not isinstance(scores, Tensor) or scores.shape != (n,):
            shape = getattr(scores, "shape", type(scores).__name__)
            raise ValueError(f"a callable target must return a Tensor of shape ({n},), one score per image; got {shape}")
        return scores, None, np.zeros(n)
    if output.ndim != 2:
        raise ValueError(
            f"the model output has shape {output.shape}; class targets need (N, classes). "
            "For other outputs pass a callable target that returns one score per image."
        )
    classes = target_classes(output.data, target)
    rows = np.arange(n)
    logits = output[rows, classes]
    if score == "logit":
        return logits, classes, np.zeros(n)
    if score == "softmax":
        return ops.softmax(output, dim=1)[rows, classes], classes, np.zeros(n)
    shift = logits.data.copy()  # S0, a constant
    return ops.exp(logits - Tensor(shift)), classes, shift


# ----------------------------------------------------------------------------
# The capture
# ----------------------------------------------------------------------------


@dataclass
class Capture:
    """What one forward (and backward) pass at a layer gives.

    layer        the name of the captured layer
    output       the model output (N, classes) as a NumPy array
    classes      the target class of each image (N,), or None for a callable target
    activations  A, (N, K, h, w): a leaf Tensor from which `scores` was computed
    scores       y, (N,): a Tensor in the graph of `activations`
    score        "logit", "softmax", "exp" or "callable"
    log_scale    (N,): for score="exp", y is exp(S - log_scale) (see class_scores); else 0
    """

    layer: str
    output: np.ndarray
    classes: np.ndarray | None
    activations: Tensor
    scores: Tensor
    score: str
    log_scale: np.ndarray

    @property
    def A(self) -> np.ndarray:
        return self.activations.data

    def gradients(self, create_graph: bool = False) -> Tensor:
        """g = dy/dA for every image at once (images are independent, so the
        gradient of the sum of the scores is each image's own gradient)."""
        (g,) = grad(self.scores.sum(), self.activations, create_graph=create_graph, allow_unused=True)
        if g is None:  # the score does not depend on this layer at all
            g = Tensor(np.zeros_like(self.A))
        require_finite(g.data, f"the gradient dy/dA at layer {self.layer!r}",
                       f"the backward pass overflowed although the forward pass was finite; {overflow_fix(self.A.dtype)}")
        return g


def capture(model, x, layer: str, target=None, score: str = "logit") -> Capture:
    """Run `model` on `x`, capturing the activations of `layer` and the score of `target`."""
    x = checked_images(x)

    def as_leaf(inputs, output):
        set_grad_enabled(True)  # record from here up: the layers above A need a graph
        return Tensor(output.data, requires_grad=True)

    # The layers below A run without a graph (nothing is differentiated there); the
    # replacement switches recording on; the `with` blocks restore the caller's mode.
    with layer_output(model, layer, replace=as_leaf) as seen, no_grad():
        output = model(Tensor(x.data))
        with enable_grad():
            scores, classes, log_scale = class_scores(output, target, score)
    seen.feature_maps()
    check_forward(model, x, seen.output.data, output.data)
    require_finite(scores.data, f"the score ({score if not callable(target) else 'the target callable'})",
                   "the target must give a finite score for every image")
    kind = "callable" if callable(target) else score
    return Capture(layer, output.data, classes, seen.output, scores, kind, log_scale)


def activations_and_gradients(model, x, layer, target=None, score="logit"):
    """(A, g) as NumPy arrays: what the gradient family of methods needs."""
    cap = capture(model, x, layer, target, score)
    return cap.A, cap.gradients().data


def predict(model, x) -> np.ndarray:
    """The model output for x in eval mode, without a graph (model left unchanged)."""
    x = checked_images(x)
    with evaluation_mode(model), no_grad():
        output = model(Tensor(x.data)).data
    check_forward(model, x, output)
    return output
