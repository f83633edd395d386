"""Synthetic images with ground truth: shapes on textured, noisy backgrounds.

Every generator takes an `np.random.Generator`, so a seed gives the same
images on every machine, and nothing is downloaded. Each object is drawn from
a mask, so we know exactly where every object is: the ground truth that lets
lessons and metrics ask whether a map points at the object.

Classes (CLASSES): 0 "disk", 1 "square", 2 "triangle". Squares and triangles
are rotated at random and every object gets a random colour, so only the
shape tells the classes apart.

    single_instance(rng, n)  one object per image; label = its class
    multi_instance(rng, n)   1 to 4 objects of the labelled class, plus 0 to 2
                             distractors of the other classes

Images are float64 (N, 3, H, W) with values roughly in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASSES = ("disk", "square", "triangle")


@dataclass
class ShapesDataset:
    """images (N, 3, H, W); labels (N,) int; masks[i]: (k_i, H, W) bool, one per
    instance of the labelled class in image i; distractor_masks[i]: (d_i, H, W)
    bool, one per object of another class (none in single-instance sets)."""

    images: np.ndarray
    labels: np.ndarray
    masks: list
    distractor_masks: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def union_masks(self) -> np.ndarray:
        """(N, H, W) bool: where any instance of the labelled class is."""
        return np.stack([m.any(axis=0) for m in self.masks])


# ----------------------------------------------------------------------------
# Drawing one shape
# ----------------------------------------------------------------------------


def shape_mask(kind: str, size: int, center, radius: float, angle: float) -> np.ndarray:
    """A boolean (size, size) mask of one shape, tested at pixel centres.

    radius: the circumradius (the centre-to-corner distance for square and triangle).
    angle: the rotation in radians (a disk ignores it).
    """
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = rows - center[0], cols - center[1]
    # rotate the pixel coordinates into the shape's own frame
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    if kind == "disk":
        return dx**2 + dy**2 <= (0.85 * radius) ** 2  # same area scale as the others
    if kind == "square":
        half = radius / np.sqrt(2)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "triangle":
        # inside all three edges of an equilateral triangle with circumradius `radius`
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            theta = 2 * np.pi * k / 3
            inside &= np.cos(theta) * u + np.sin(theta) * v <= radius / 2  # inradius = R / 2
        return inside
    raise ValueError(f"unknown shape {kind!r}; choose one of {CLASSES}")


def textured_background(rng: np.random.Generator, size: int, noise: float = 0.08) -> np.ndarray:
    """(3, size, size): two random colour gratings plus pixel noise."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = np.empty((3, size, size))
    base = rng.uniform(0.25, 0.55, size=3)
    for c in range(3):
        texture = 0.0
        for _ in range(2):
            freq = rng.uniform(1.5, 5.0)
            theta = rng.uniform(0, np.pi)
            phase = rng.uniform(0, 2 * np.pi)
            texture = texture + 0.08 * np.sin(2 * np.pi * freq * (np.cos(theta) * rows + np.sin(theta) * cols) + phase)
        image[c] = base[c] + texture
    return image + rng.normal(0, noise, size=image.shape)


def _paint(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the mask with a random colour, bright or dark against the background."""
    # bright or dark, always far from the background's 0.25..0.65, so the edge is clear
    colour = rng.uniform(0.0, 1.0, size=3)
    colour = 0.85 + 0.15 * colour if rng.random() < 0.5 else 0.08 * colour
    image[:, mask] = colour[:, None] + rng.normal(0, 0.03, size=(3, int(mask.sum())))


def _place(rng, size, kind, radius_range, taken, margin=2.0, tries=200):
    """A mask for `kind` that keeps `margin` pixels away from the `taken` mask."""
    for _ in range(tries):
        radius = rng.uniform(*radius_range)
        center = rng.uniform(radius, size - radius, size=2)
        mask = shape_mask(kind, size, center, radius, rng.uniform(-0.3, 0.3))
        grown = shape_mask("disk", size, center, (radius + margin) / 0.85, 0.0)
        if mask.sum() >= 6 and not (grown & taken).any():
            return mask
    return None


# ----------------------------------------------------------------------------
# Data sets
# ----------------------------------------------------------------------------


def single_instance(rng: np.random.Generator, n: int, size: int = 32, radius=(6.0, 10.0)) -> ShapesDataset:
    """n images, each with one shape of a random class; labels balanced at random."""
    _check(n, size)
    images = np.empty((n, 3, size, size))
    labels = rng.integers(0, len(CLASSES), size=n)
    masks = []
    for i in range(n):
        image = textured_background(rng, size)
        mask = _place(rng, size, CLASSES[labels[i]], radius, np.zeros((size, size), bool))
        _paint(image, mask, rng)
        images[i] = image
        masks.append(mask[None])
    return ShapesDataset(images, labels, masks, [np.zeros((0, size, size), bool) for _ in range(n)])


def multi_instance(rng: np.random.Generator, n: int, size: int = 48, radius=(5.0, 8.0),
                   instances=(1, 4), distractors=(0, 2)) -> ShapesDataset:
    """n images, each with `instances` (inclusive range) objects of the labelled
    class and `distractors` objects of the other classes, none overlapping."""
    _check(n, size)
    images = np.empty((n, 3, size, size))
    labels = rng.integers(0, len(CLASSES), size=n)
    masks, distractor_masks = [], []
    for i in range(n):
        image = textured_background(rng, size)
        taken = np.zeros((size, size), bool)
        own, other = [], []
        wanted = [CLASSES[labels[i]]] * rng.integers(instances[0], instances[1] + 1)
        others = [c for c in CLASSES if c != CLASSES[labels[i]]]
        extra = [others[rng.integers(len(others))] for _ in range(rng.integers(distractors[0], distractors[1] + 1))]
        for kind in wanted + extra:
            mask = _place(rng, size, kind, radius, taken)
            if mask is None:
                continue  # no room left: fewer objects in this image
            taken |= mask
            _paint(image, mask, rng)
            (own if kind == CLASSES[labels[i]] else other).append(mask)
        images[i] = image
        masks.append(np.array(own, dtype=bool).reshape(-1, size, size))
        distractor_masks.append(np.array(other, dtype=bool).reshape(-1, size, size))
    return ShapesDataset(images, labels, masks, distractor_masks)


def _check(n, size):
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
