"""Figures: an image with its map on top, a grid of methods x images, and save_figure.

Choices, and why:

- **Object API, never pyplot.** Every figure is a `matplotlib.figure.Figure` built
  directly. pyplot keeps a global list of open figures and picks a GUI backend on first
  use; a lesson run in CI or over ssh must never open a window, and a long lesson must
  not pile figures up in that list. A plain Figure is saved by matplotlib's Agg
  renderer and freed like any Python object. To look at one interactively, save it, or
  display it in Jupyter (the last expression of a cell shows a Figure).
- **Maps must already have the image's size.** This module draws; it does not resample.
  Upsampling is a convention that changes the picture (bilinear with half-pixel centres,
  corner-aligned, nearest...; see minicam.cam.conventions), so it belongs to the CAM
  pipeline where it is explicit and tested: use `minicam.cam.explain`, which returns maps
  of shape (N, H, W) at the input's size. Maps are drawn with `interpolation="nearest"`,
  so each screen pixel shows a value of the array, not a second, hidden smoothing.
- **Colours.** Images are NCHW, channels in RGB order; a one-channel image is drawn grey.
  Each image is min-max scaled for display over all its channels together (so its hues
  survive), and a constant image becomes mid grey rather than NaN. Maps use the "jet"
  colormap with alpha 0.5 on the fixed range [vmin, vmax] = [0, 1] (explain()'s maps are
  normalised to it), so colours mean the same value in every panel. This is close to
  pytorch-grad-cam's `show_cam_on_image` default: a JET heatmap blended half and half
  with the image, with `use_rgb=True`. That function works in OpenCV's BGR order unless
  told otherwise (red and blue swapped), quantises the map to uint8 and divides the blend
  by its maximum; here everything stays RGB and float. The colorbar shows the colormap
  at full strength: it is the scale for reading values, not the blend.
- **Files.** `save_figure` writes PNGs into `$MINICAM_OUT` (else ./minicam_out), at
  exactly figsize * dpi pixels (no tight bounding box), so tests and lessons know where
  the file is and how big it is.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from minicam import files

COLORBAR_LABEL = "map value"
IMAGE_ROW_LABEL = "input"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".pdf")
DEFAULT_OUT_FOLDER = "minicam_out"


def _as_float_array(values, what: str) -> np.ndarray:
    """A float64 NumPy copy of `values`. Tensors (minicam's, or a CPU torch tensor) are
    accepted through their .numpy() method, so this module need not import them."""
    if hasattr(values, "numpy") and not isinstance(values, np.ndarray):
        values = values.numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values; fix or mask them before drawing")
    return array


def to_display_image(image) -> np.ndarray:
    """(C, H, W) with C in {1, 3}, or (H, W) -> (H, W, 3) floats in [0, 1] for imshow.

    Min-max scaled per image, over all channels together: (x - min) / (max - min).
    A constant image has no range and becomes mid grey (0.5), never NaN.
    A 3-d array whose first axis is 1 or 3 is read as channels-first (NCHW convention).
    """
    array = _as_float_array(image, "image")
    if array.ndim == 2:
        channels = array[None]                                   # (H, W) -> (1, H, W)
    elif array.ndim == 3 and array.shape[0] in (1, 3):
        channels = array
    elif array.ndim == 3 and array.shape[-1] in (1, 3):
        raise ValueError(f"image has shape {array.shape}, which looks channels-last (H, W, C); "
                         f"minicam uses channels-first: pass image.transpose(2, 0, 1)")
    elif array.ndim == 4:
        raise ValueError(f"image has shape {array.shape}, a batch; pass one image, e.g. images[0]")
    else:
        raise ValueError(f"image has shape {array.shape}; expected (C, H, W) with C = 1 (grey) "
                         f"or 3 (RGB), or (H, W)")
    if channels.shape[1] == 0 or channels.shape[2] == 0:
        raise ValueError(f"image has shape {array.shape}, with no pixels")

    low, high = channels.min(), channels.max()
    if high > low:
        scaled = (channels - low) / (high - low)
    else:
        scaled = np.full_like(channels, 0.5)                     # no range: mid grey
    if scaled.shape[0] == 1:
        scaled = np.repeat(scaled, 3, axis=0)                    # grey -> equal R, G, B
    return np.ascontiguousarray(scaled.transpose(1, 2, 0))       # (3, H, W) -> (H, W, 3)


def _check_drawing_options(alpha: float, vmin: float, vmax: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0: image only, 1: map only); got {alpha}")
    if not vmin < vmax:
        raise ValueError(f"vmin must be below vmax; got vmin={vmin}, vmax={vmax}")


def _hide_ticks(ax) -> None:
    """No ticks or frame, but keep the axis labels (grid's row names are y-labels)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _full_strength_colorbar(fig, axes, cmap, vmin: float, vmax: float):
    """A colorbar of the colormap itself, not of the semi-transparent overlay."""
    scale = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=cmap)
    return fig.colorbar(scale, ax=axes, label=COLORBAR_LABEL)


def _draw(ax, display_image, cam, cmap, alpha, vmin, vmax):
    ax.imshow(display_image, interpolation="nearest")
    map_image = ax.imshow(cam, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, interpolation="nearest")
    _hide_ticks(ax)
    return map_image


def overlay(ax, image, cam, *, cmap="jet", alpha=0.5, colorbar=True, title=None, vmin=0.0, vmax=1.0):
    """Draw `image` (C, H, W) or (H, W) on `ax`, and `cam` (H, W) over it.

    The map is coloured with `cmap` on the range [vmin, vmax] (values outside are
    clipped to the ends) and blended with weight `alpha`: alpha * map colour +
    (1 - alpha) * image. Returns the map's AxesImage.
    """
    _check_drawing_options(alpha, vmin, vmax)
    image = _as_float_array(image, "image")
    display_image = to_display_image(image)
    cam = _as_float_array(cam, "cam")
    if cam.shape != display_image.shape[:2]:
        raise ValueError(f"cam has shape {cam.shape} but the image {image.shape} is "
                         f"{display_image.shape[:2]} pixels: maps must be upsampled to the image's "
                         f"(H, W) first, e.g. with minicam.cam.explain")
    map_image = _draw(ax, display_image, cam, cmap, alpha, vmin, vmax)
    if colorbar:
        _full_strength_colorbar(ax.figure, ax, cmap, vmin, vmax)
    if title is not None:
        ax.set_title(title)
    return map_image


def overlay_figure(image, cam, *, figsize=None, **kwargs) -> Figure:
    """One overlay in a figure of its own; kwargs go to overlay()."""
    if figsize is None:
        figsize = (4.6, 4.0) if kwargs.get("colorbar", True) else (4.0, 4.0)
    fig = Figure(figsize=figsize, layout="constrained")
    overlay(fig.add_subplot(), image, cam, **kwargs)
    return fig


def _check_grid_inputs(images, maps, row_titles, column_titles):
    """Arrays of the right shapes and titles of the right lengths, or a clear error."""
    images = _as_float_array(images, "images")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3; got shape {images.shape} "
                         f"(for one image x of shape (C, H, W), pass x[None])")
    n, _, height, width = images.shape
    if not isinstance(maps, dict):
        raise TypeError(f"maps must be a dict {{method name: (N, H, W) array}}; got {type(maps).__name__}")
    arrays = {}
    for method, cams in maps.items():
        arrays[method] = _as_float_array(cams, f"maps[{method!r}]")
        if arrays[method].shape != (n, height, width):
            raise ValueError(f"maps[{method!r}] has shape {arrays[method].shape} but images are "
                             f"{images.shape}: each map must be (N, H, W) = {(n, height, width)}; "
                             f"upsample maps to the input size first, e.g. with minicam.cam.explain")
    row_titles = list(maps) if row_titles is None else list(row_titles)
    if len(row_titles) != len(maps):
        raise ValueError(f"row_titles has {len(row_titles)} entries for {len(maps)} methods; give one "
                         f"per method (the image row is labelled {IMAGE_ROW_LABEL!r})")
    if column_titles is not None and len(column_titles) != n:
        raise ValueError(f"column_titles has {len(column_titles)} entries for {n} images; give one per image")
    return images, arrays, row_titles, column_titles


def grid(images, maps, *, row_titles=None, column_titles=None, cmap="jet", alpha=0.5, colorbar=True,
         figsize=None, vmin=0.0, vmax=1.0) -> Figure:
    """A figure with one column per image and one row per method, under a row of the images.

    images         (N, C, H, W)
    maps           {method name: (N, H, W) array}; rows follow the dict's order
    row_titles     labels on the left of the method rows (default: the method names)
    column_titles  N titles on top, e.g. the predicted classes
    colorbar       one colorbar on the right, shared: every map uses the same [vmin, vmax]
    """
    _check_drawing_options(alpha, vmin, vmax)
    images, arrays, row_titles, column_titles = _check_grid_inputs(images, maps, row_titles, column_titles)
    n_rows, n_columns = len(arrays) + 1, images.shape[0]
    if figsize is None:
        figsize = (1.9 * n_columns + (0.9 if colorbar else 0.3), 1.9 * n_rows + 0.3)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(n_rows, n_columns, squeeze=False)

    displays = [to_display_image(image) for image in images]
    for column, display_image in enumerate(displays):
        axes[0, column].imshow(display_image, interpolation="nearest")
        _hide_ticks(axes[0, column])
        if column_titles is not None:
            axes[0, column].set_title(str(column_titles[column]))
    axes[0, 0].set_ylabel(IMAGE_ROW_LABEL)

    for row, (cams, label) in enumerate(zip(arrays.values(), row_titles), start=1):
        for column, display_image in enumerate(displays):
            _draw(axes[row, column], display_image, cams[column], cmap, alpha, vmin, vmax)
        axes[row, 0].set_ylabel(str(label))

    if colorbar and arrays:
        _full_strength_colorbar(fig, axes[1:].ravel().tolist(), cmap, vmin, vmax)
    return fig


def save_figure(fig, name: str, folder=None, dpi: int = 100, force: bool = False) -> pathlib.Path:
    """Write fig to <folder>/<name>.png and return that path.

    folder: the argument, else $MINICAM_OUT, else ./minicam_out; created if missing.
    ".png" is added unless name already ends with an image suffix (.png .jpg .jpeg .svg .pdf).
    The file is exactly figsize * dpi pixels. The figure is left open: it is the caller's.
    The file is written atomically and carries minicam's mark; an existing file without
    the mark (one minicam did not write) is refused unless force=True (minicam.files).
    """
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__} "
                        f"(for an Axes, pass ax.figure)")
    if not isinstance(name, str) or name.strip(" .") == "":
        raise ValueError(f"name must be a file name such as '05_cam_overlay'; got {name!r}")
    if "/" in name or "\\" in name:
        raise ValueError(f"name {name!r} contains a path separator; give a plain file name and "
                         f"pass the folder as folder=... (or set MINICAM_OUT)")
    if not dpi > 0:
        raise ValueError(f"dpi must be positive; got {dpi}")
    if folder is None:
        folder = os.environ.get("MINICAM_OUT") or DEFAULT_OUT_FOLDER
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output folder {str(folder)!r} exists and is a file; choose another folder")
    file_name = name if name.lower().endswith(IMAGE_SUFFIXES) else name + ".png"
    return files.save_matplotlib_figure(fig, folder / file_name, dpi, force=force)
