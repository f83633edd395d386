"""Port mistakes: the case's net rebuilt in another framework with one conversion wrong.

A channels-last framework (Keras, TensorFlow, JAX/Flax) stores its weights in
other layouts than torch and minicam (minicam.interop, the Keras functions, says
how to convert each). A port that gets one conversion wrong still runs, and its
maps look plausible; its logits differ. Each variant here rebuilds the case's net
(in minicam, NCHW) with that one mistake, so that verify can name it from the
logits, from the activations, or from the maps. They are context variants
(catalogue.register_context): any other method variant can run on the mistaken net.
"""
from __future__ import annotations

import numpy as np

from minicam import interop
from minicam.conformance.architecture import build, describe
from minicam.conformance.catalogue import register_context

KERAS = "minicam.interop (the Keras functions) and the exported README's Keras section"


def _rebuilt(lab, key, change_layers=None, change_state=None):
    """The case's net rebuilt from its layer list and weights, with the layers or the weights changed;
    None if the change changes nothing."""
    def make():
        layers, state = describe(lab.case.model), dict(lab.case.model.state_dict())
        new_layers = change_layers(layers) if change_layers else layers
        new_state = change_state(layers, state) if change_state else state
        if new_layers is None or new_state is None:
            return None
        return build(new_layers, new_state, dtype=lab.case.x.dtype)
    return lab.cached(("port", key), make)


def _flatten_linears(lab):
    """(linear layer name, (C, H, W) of the map its Flatten flattens) for every Linear after a Flatten of a map."""
    from minicam.autograd import Tensor, no_grad

    found, flattened = [], None
    x = Tensor(lab.case.x[:1])
    with no_grad():
        for name, module in lab.case.model.named_children():
            if type(module).__name__ == "Flatten" and x.ndim == 4:
                flattened = tuple(x.shape[1:])
            elif type(module).__name__ == "Linear" and flattened is not None:
                found.append((name, flattened))
                flattened = None
            x = module(x)
    return found


@register_context("flatten-dense-transposed", "a Dense after Flatten given the Linear's weight plainly transposed "
                  "(the channels-last flatten order not taken into account)",
                  f"the classic channels-last port mistake; the right conversion is interop.flatten_dense_to_keras ({KERAS})")
def flatten_dense_transposed(lab):
    """The net a Keras port computes when Dense(kernel=W.T) follows a channels-last Flatten: in minicam's
    (C, H, W) order its weight is interop.flatten_dense_from_keras(W.T, C, H, W)."""
    linears = _flatten_linears(lab)
    if not linears:
        return None

    def change(layers, state):
        state = dict(state)
        for name, (channels, height, width) in linears:
            if height * width == 1:
                return None  # a 1x1 map (after global pooling) has one order only
            state[f"{name}.weight"] = interop.flatten_dense_from_keras(state[f"{name}.weight"].T, channels, height, width)
        return state
    model = _rebuilt(lab, "flatten-dense", change_state=change)
    return None if model is None else {"model": model}


@register_context("conv-kernel-reshaped", "conv weights (K, C, kh, kw) reshaped to Keras's (kh, kw, C, K) instead of "
                  "transposed", f"a channels-last port that reshapes a kernel instead of transposing it; the right "
                  f"conversion is interop.conv_kernel_to_hwio ({KERAS})")
def conv_kernel_reshaped(lab):
    """Every Conv2d weight W as a Keras port that sets kernel = W.reshape(kh, kw, C, K) computes it:
    in minicam's layout, interop.conv_kernel_from_hwio(W.reshape(kh, kw, C, K))."""
    def change(layers, state):
        state = dict(state)
        convs = [layer["name"] for layer in layers if layer["type"] == "Conv2d"]
        for name in convs:
            weight = state[f"{name}.weight"]
            out, channels, kh, kw = weight.shape
            state[f"{name}.weight"] = interop.conv_kernel_from_hwio(weight.reshape(kh, kw, channels, out))
        return state if convs else None
    model = _rebuilt(lab, "conv-reshaped", change_state=change)
    return None if model is None else {"model": model}


@register_context("batchnorm-eps-keras", "BatchNorm with Keras's default epsilon 1e-3 instead of the net's (torch's "
                  "1e-5)", f"keras.layers.BatchNormalization(epsilon=1e-3) by default ({KERAS})")
def batchnorm_eps_keras(lab):
    """Every BatchNorm2d with eps = 1e-3 (Keras's default), its statistics unchanged."""
    def change(layers):
        changed = [dict(layer, args=dict(layer["args"], eps=1e-3)) if layer["type"] == "BatchNorm2d" else layer
                   for layer in layers]
        return changed if changed != layers else None
    model = _rebuilt(lab, "bn-eps", change_layers=change)
    return None if model is None else {"model": model}


@register_context("batchnorm-keras-momentum-update", "BatchNorm statistics updated once, in training mode, with torch's "
                  "momentum 0.1 given to Keras (whose momentum is the weight of the OLD statistics)",
                  f"keras.layers.BatchNormalization(momentum=0.1): moving = 0.1 moving + 0.9 batch; torch's 0.1 means "
                  f"running = 0.9 running + 0.1 batch; the conversion is 1 - momentum ({KERAS})")
def batchnorm_keras_momentum_update(lab):
    """The net after one training-mode pass over the case's images with Keras's momentum convention and
    the number 0.1: running statistics 0.1 old + 0.9 of the batch's (unbiased variance), then eval mode."""
    def change(layers, state):
        from minicam.autograd import Tensor, no_grad

        norms = [layer["name"] for layer in layers if layer["type"] == "BatchNorm2d"]
        if not norms:
            return None
        state = dict(state)
        x = Tensor(lab.case.x)
        with no_grad():
            for name, module in lab.case.model.named_children():
                if name in norms:  # training mode: normalised with the batch's statistics, which update the running ones
                    batch = x.data
                    mean, biased = batch.mean(axis=(0, 2, 3)), batch.var(axis=(0, 2, 3))
                    count = batch.size // batch.shape[1]
                    state[f"{name}.running_mean"] = 0.1 * state[f"{name}.running_mean"] + 0.9 * mean
                    state[f"{name}.running_var"] = (0.1 * state[f"{name}.running_var"]
                                                    + 0.9 * biased * count / (count - 1))
                    shape = (1, -1, 1, 1)
                    scale = module.weight.data / np.sqrt(biased + module.eps)
                    x = Tensor((batch - mean.reshape(shape)) * scale.reshape(shape) + module.bias.data.reshape(shape))
                else:
                    x = module(x)
        return state
    model = _rebuilt(lab, "bn-momentum", change_state=change)
    return None if model is None else {"model": model}
