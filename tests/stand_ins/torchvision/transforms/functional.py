"""A stand-in for the resize pytorch_grad_cam/sess.py imports (never called by its CAMs)."""
from torchvision import not_provided

resize = not_provided("transforms.functional.resize")
