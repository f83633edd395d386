"""Training in NumPy, and the command that reproduces the shipped weights.

    python -m minicam.train              retrain the lesson CNN from seed 0 and
                                         write minicam/weights/lesson_cnn.npz
    python -m minicam.train --out F.npz  write somewhere else

The loop is the textbook one: shuffle, then for each mini-batch: forward,
loss (one-vs-rest binary cross-entropy, see one_vs_rest_loss), backward, optimiser step; after each epoch it prints the
epoch, mean loss, training accuracy, test accuracy and elapsed time.
Training runs in float32 (about 2x faster here); the shipped weights are
stored in float32 and load into float64 models unchanged (load_state_dict casts).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from minicam import Tensor, files, no_grad, ops
from minicam.data import single_instance
from minicam.errors import add_debug_flag, run_command
from minicam.models import LessonCNN
from minicam.optim import Adam

SEED = 0
TRAIN_SIZE, TEST_SIZE = 3000, 600


def accuracy(model, images, labels, batch_size=256) -> float:
    """The share of images whose predicted class (argmax of the logits) is the label."""
    model.eval()
    correct = 0
    dtype = next(iter(model.parameters())).dtype
    with no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(Tensor(images[start : start + batch_size].astype(dtype)))
            correct += int(np.sum(np.argmax(logits.data, axis=1) == labels[start : start + batch_size]))
    return correct / len(labels)


def one_vs_rest_loss(logits, labels):
    """Mean over images and classes of the binary cross-entropy of sigmoid(logit_c)
    against [label == c]: log(1 + e^z) - y z = softplus(z) - y z.

    Why not softmax cross-entropy: it depends only on DIFFERENCES of logits, so a
    network may learn a "default" class whose logit comes from the background
    alone (here: "triangle" = neither disk nor square), and that class's CAM is
    then flat: the evidence is everywhere. One-vs-rest asks every logit to be
    high exactly when its own shape is present, on a background that all
    images share, so each class must find positive evidence on its object.
    """
    targets = np.eye(logits.shape[1], dtype=logits.dtype)[labels]
    return (ops.softplus(logits) - logits * Tensor(targets)).mean()


def train(model, images, labels, *, epochs, batch_size, lr, rng, test=None, log=print, loss_function=one_vs_rest_loss):
    """Mini-batch training with Adam; returns the history (a list of dicts).

    loss_function(logits, labels): one_vs_rest_loss by default, or e.g. ops.cross_entropy.
    test: optional (images, labels) evaluated after every epoch.
    """
    optimiser = Adam(model.parameters(), lr=lr)
    dtype = next(iter(model.parameters())).dtype
    history, start_time = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(labels))
        losses, correct = [], 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = model(Tensor(images[batch].astype(dtype)))
            loss = loss_function(logits, labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            correct += int(np.sum(np.argmax(logits.data, axis=1) == labels[batch]))
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "train_accuracy": correct / len(labels),
               "seconds": time.perf_counter() - start_time}
        if test is not None:
            row["test_accuracy"] = accuracy(model, *test)
        history.append(row)
        test_text = f"  test accuracy {row['test_accuracy']:.3f}" if test is not None else ""
        log(f"epoch {epoch:2d}  loss {row['loss']:.4f}  train accuracy {row['train_accuracy']:.3f}{test_text}"
            f"  elapsed {row['seconds']:.1f} s")
    model.eval()
    return history


def train_lesson_cnn(seed=SEED, epochs=30, train_size=TRAIN_SIZE, test_size=TEST_SIZE, log=print):
    """The recipe behind the shipped weights: returns (model, history, test accuracy)."""
    rng = np.random.default_rng(seed)
    train_set = single_instance(rng, train_size)
    test_set = single_instance(rng, test_size)
    model = LessonCNN(dtype=np.float32, rng=rng)
    history = train(model, train_set.images, train_set.labels, epochs=epochs, batch_size=32, lr=3e-3, rng=rng,
                    test=(test_set.images, test_set.labels), log=log)
    return model, history, history[-1]["test_accuracy"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minicam.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(__file__).parent / "weights" / "lesson_cnn.npz"
    parser.add_argument("--out", type=Path, default=default_out, help=f"where to write the weights (default {default_out})")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--force", action="store_true", help="overwrite a weights file minicam did not write")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.seed < 0 or args.epochs < 1:
        parser.error(f"--seed must be non-negative and --epochs positive, got {args.seed} and {args.epochs}")
    if args.out.suffix != ".npz":
        parser.error(f"--out must name an .npz file, got {args.out}")
    files.check_writable(args.out, args.force)  # refuse before training, not after it
    model, history, test_accuracy = train_lesson_cnn(args.seed, args.epochs)
    files.write_npz(args.out, model.state_dict(), args.force)
    print(f"test accuracy {test_accuracy:.3f} after {history[-1]['seconds']:.1f} s; weights written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python -m minicam.train", main, sys.argv[1:]))
