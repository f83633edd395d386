"""minicam.cam: class activation maps from activations, gradients and class weights.

  capture.py      run a model, keep a named layer's activations A and dy/dA
  cam.py          CAM (Zhou et al. 2016)
  gradient.py     Grad-CAM, Grad-CAM+, HiResCAM, Grad-CAM element-wise, XGrad-CAM, LayerCAM
  gradcampp.py    Grad-CAM++ (paper, authors, exact) and Smooth Grad-CAM++
  scorecam.py     Score-CAM
  ablation.py     Ablation-CAM
  eigen.py        Eigen-CAM, EigenGrad-CAM
  guided.py       guided backpropagation and Guided Grad-CAM
  registry.py     METHODS: name -> function
  conventions.py  the steps after the raw map (ReLU, resize, normalise) and each peer's presets
  explain.py      explain(): method -> upsample -> normalise

Each method: f(model, x, layer, target=None, **options) -> raw map (N, h, w).
"""
from minicam.cam.capture import Capture, capture
from minicam.cam.conventions import PRESETS, Pipeline
from minicam.cam.explain import describe_convention, explain
from minicam.cam.registry import HAS_FINAL_RELU, METHODS

__all__ = ["METHODS", "HAS_FINAL_RELU", "PRESETS", "Pipeline", "Capture", "capture", "explain", "describe_convention"]
