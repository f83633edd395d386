"""`python -m minicam`: a short demonstration of the autograd, checked against finite differences.

(Replaced by the CAM comparison figure once the course's shipped model lands.)
"""
import argparse
import sys

import numpy as np

import minicam
from minicam import Tensor, ops
from minicam.gradcheck import check_second_order, check_vjp


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minicam", description=__doc__)
    parser.add_argument("--out", default=None, help="output folder (unused by this demonstration)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((4, 3))
    w1, b1 = rng.standard_normal((5, 3)), rng.standard_normal(5)
    w2 = rng.standard_normal((2, 5))

    def net(x, w1, b1, w2):
        return ops.log_softmax(ops.linear(ops.tanh(ops.linear(x, w1, b1)), w2), dim=1)

    print(f"minicam {minicam.__version__}: a two-layer network, x (4, 3) -> tanh -> log_softmax (4, 2)")
    first = check_vjp(net, [x, w1, b1, w2], rng)
    second = check_second_order(net, [x, w1, b1, w2], rng)
    print(f"first derivatives vs finite differences:  relative error {first:.1e}")
    print(f"second derivatives vs finite differences: relative error {second:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
