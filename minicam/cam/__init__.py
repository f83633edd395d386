"""minicam.cam: class activation maps from activations, gradients and class weights.

  maps.py         ReLU and the channel-weighted sum, the building blocks of every map
  capture.py      run a model, keep a named layer's activations A and dy/dA (layer_output)
  cam.py          CAM (Zhou et al. 2016)
  gradient.py     Grad-CAM, Grad-CAM+, HiResCAM, Grad-CAM element-wise, XGrad-CAM, LayerCAM
  gradcampp.py    Grad-CAM++ (paper, authors, exact, and the peers' options) and Smooth Grad-CAM++
  scorecam.py     Score-CAM, SS-CAM, IS-CAM
  ablation.py     Ablation-CAM
  eigen.py        Eigen-CAM, EigenGrad-CAM, KPCA-CAM
  noise.py        the Gaussian noise of Smooth Grad-CAM++ and SS-CAM
  guided.py       guided backpropagation and Guided Grad-CAM
  registry.py     REGISTRY: one record per method; METHODS: name -> function
  conventions.py  the steps after the raw map (ReLU, resize, normalise); PRESETS: one record per peer,
                  with the options of each method that reproduce that library
  explain.py      explain(): method -> ReLU -> upsample -> normalise

Each method is a formula, <method>_map(A, g, ..., relu=...), and a model-facing function
f(model, x, layer, target=None, **options) -> raw map (N, h, w) that captures what the
formula needs and calls it.
"""
from minicam.cam.capture import Capture, capture
from minicam.cam.conventions import PRESETS, Pipeline
from minicam.cam.explain import describe_convention, explain
from minicam.cam.registry import METHODS, REGISTRY, Method

__all__ = ["METHODS", "REGISTRY", "Method", "PRESETS", "Pipeline", "Capture", "capture", "explain",
           "describe_convention"]
