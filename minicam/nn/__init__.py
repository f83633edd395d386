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

Files: module.py (Module, Parameter, Sequential, Identity), layers.py (the layers).
"""
from minicam.nn.module import Identity, Module, Parameter, RemovableHandle, Sequential, manual_seed
from minicam.nn.layers import (
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh,
)
