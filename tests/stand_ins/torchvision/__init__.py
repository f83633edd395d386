"""A stand-in for torchvision, for the peer tests only (see tests/stand_ins/README.md).

It provides the names pytorch-grad-cam 1.5.7 imports when it is imported, and nothing more:
its CAM classes never call them, so each one raises an error saying so if called.
"""
__version__ = "0.0.0+minicam.stand.in"
STAND_IN = True


def not_provided(name):
    """A callable standing in for torchvision's `name` that refuses to run."""

    def refuse(*args, **kwargs):
        raise NotImplementedError(f"torchvision.{name} is a stand-in for minicam's peer tests "
                                  "(tests/stand_ins/README.md); install the real torchvision to use it")

    refuse.__name__ = name.rsplit(".", 1)[-1]
    return refuse
