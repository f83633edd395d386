"""Stand-ins for the transforms pytorch_grad_cam/utils/image.py imports (never called by its CAMs)."""
from torchvision import not_provided

Compose = not_provided("transforms.Compose")
Normalize = not_provided("transforms.Normalize")
ToTensor = not_provided("transforms.ToTensor")
