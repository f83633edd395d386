"""CAM (Zhou et al. 2016): class activation mapping for a global-average-pooling head.

For a network whose layer A feeds global average pooling and then a Linear
layer, the class score is

    S_c = sum_k W_ck * (1/Z) sum_ij A_kij + b_c          (Section 2 of the paper)

and the class activation map is the same sum without the spatial average:

    M_c(i, j) = sum_k W_ck A_kij                          (eq. 2; no ReLU, no bias)

so that mean_ij M_c = S_c - b_c. Grad-CAM's weights on such a head are
exactly W_ck / Z, hence ReLU(M_c) = Z * Grad-CAM (a test checks this).
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, no_grad
from minicam.cam.capture import check_forward, checked_images, layer_output, target_classes
from minicam.cam.maps import final_relu, weighted_sum
from minicam.nn import Linear


def final_linear(model):
    """The name and module of the last Linear layer in the model's module order."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, Linear)]
    if not linears:
        raise ValueError(f"CAM needs a final Linear layer after global average pooling; {type(model).__name__} has no Linear layer")
    return linears[-1]


def cam_map(A, class_weights, *, relu=False):
    """CAM from the activations A (N, K, h, w) and each image's class row W_c (N, K) of the
    final Linear layer: M_c = sum_k W_ck A_k (eq. 2; no bias; no ReLU in the paper)."""
    return final_relu(weighted_sum(class_weights, A), relu)


def cam(model, x, layer, target=None, *, score="logit", relu=False):
    """The CAM map (N, h, w), un-ReLU'd by default, at the layer's resolution.

    The model must be of the form ... -> layer -> global average pooling -> Linear
    (the model's output). This is checked numerically on x: the Linear's input
    must equal the spatial mean of the layer's output, and the model's output
    must be the Linear's output; otherwise a clear error says which part fails.
    """
    if score != "logit":
        raise ValueError("CAM uses the class weights of the final Linear layer, not a gradient: score= does not apply (leave 'logit')")
    x = checked_images(x)
    fc_name, fc = final_linear(model)
    with layer_output(model, layer) as seen, layer_output(model, fc) as head, no_grad():
        output = model(Tensor(x.data)).data
    check_forward(model, x, output, *([seen.output.data] if seen.calls else []))

    A = seen.output.data if seen.calls and seen.output.ndim == 4 else None
    if A is None:
        raise ValueError(f"layer {layer!r} must output feature maps (N, K, h, w); got "
                         f"{None if seen.output is None else seen.output.shape}")
    if not head.calls or head.output.shape != output.shape or not np.array_equal(head.output.data, output):
        raise ValueError(
            f"CAM needs the model's output to be the output of its final Linear layer {fc_name!r}; "
            "here something comes after it (or it is not used)"
        )
    pooled = A.mean(axis=(2, 3))
    z = head.inputs[0].data
    z = z.reshape(z.shape[0], -1)
    if z.shape != pooled.shape or not np.allclose(z, pooled, rtol=1e-10, atol=1e-12 * (1 + np.abs(pooled).max())):
        raise ValueError(
            f"CAM needs {layer!r} -> global average pooling -> Linear {fc_name!r}: the input of {fc_name!r} "
            f"(shape {z.shape}) is not the spatial mean of {layer!r}'s output (shape {A.shape}). "
            "Choose the last convolutional layer before the pooling, or use Grad-CAM, which works on any head."
        )
    classes = target_classes(output, target)
    return cam_map(A, fc.weight.data[classes], relu=relu)  # W_c: the row of each image's class
