"""minicam.viz: display scaling by hand, overlay colours read back from the rendered
pixels, grid layout and labels, save_figure's files and sizes, and no pyplot."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from minicam.viz import grid, overlay, overlay_figure, save_figure, to_display_image

# matplotlib's "jet" at its two ends, written out (not read from matplotlib) as the oracle.
JET_AT_1_DARK_RED = np.array([0.5, 0.0, 0.0])
JET_AT_0_DARK_BLUE = np.array([0.0, 0.0, 0.5])
PIXEL_TOLERANCE = 2 / 255                                        # rounding to 8-bit and back


def render(fig) -> np.ndarray:
    """The figure's pixels as floats in [0, 1], shape (rows, columns, RGBA); row 0 is the top."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba(), dtype=np.float64) / 255


def full_canvas_axes(pixels: int = 100):
    """A square figure of `pixels` x `pixels` whose one Axes covers it edge to edge."""
    fig = Figure(figsize=(2, 2), dpi=pixels / 2)
    return fig, fig.add_axes((0, 0, 1, 1))


# ---- to_display_image ----

def test_to_display_image_min_max_scales_a_grey_image_by_hand():
    image = np.array([[[-1.0, 0.0], [1.0, 3.0]]])               # (1, 2, 2): min -1, max 3, range 4
    display = to_display_image(image)
    expected_grey = np.array([[0.0, 0.25], [0.5, 1.0]])          # (x + 1) / 4
    assert display.shape == (2, 2, 3)
    for channel in range(3):
        np.testing.assert_allclose(display[:, :, channel], expected_grey)


def test_to_display_image_scales_all_channels_together_keeping_hues():
    image = np.zeros((3, 1, 2))
    image[0] = [[10.0, 20.0]]                                     # red spans 10..20
    image[2] = [[0.0, 5.0]]                                       # blue spans 0..5; global range 0..20
    display = to_display_image(image)
    np.testing.assert_allclose(display[0, 0], [0.5, 0.0, 0.0])    # (10, 0, 0) / 20
    np.testing.assert_allclose(display[0, 1], [1.0, 0.0, 0.25])   # (20, 0, 5) / 20


def test_to_display_image_of_a_2d_array_and_of_a_constant_image():
    np.testing.assert_allclose(to_display_image(np.array([[2.0, 4.0]]))[0, :, 0], [0.0, 1.0])
    constant = to_display_image(np.full((3, 4, 5), 7.0))
    assert constant.shape == (4, 5, 3)
    assert not np.isnan(constant).any()
    np.testing.assert_array_equal(constant, 0.5)


@pytest.mark.parametrize("shape, message", [
    ((2, 4, 4), r"expected \(C, H, W\) with C = 1"),
    ((4, 4, 3), r"channels-last.*transpose\(2, 0, 1\)"),
    ((1, 3, 4, 4), r"a batch; pass one image"),
    ((5,), r"has shape \(5,\)"),
    ((3, 0, 4), r"no pixels"),
])
def test_to_display_image_rejects_other_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        to_display_image(np.zeros(shape))


def test_to_display_image_rejects_nan():
    image = np.zeros((1, 2, 2))
    image[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        to_display_image(image)


# ---- overlay: the rendered pixels ----

def test_overlay_colours_map_1_red_end_and_map_0_blue_end():
    fig, ax = full_canvas_axes(100)
    cam = np.zeros((8, 8))
    cam[:4, :4] = 1.0                                             # top-left quadrant hot
    overlay(ax, np.zeros((1, 8, 8)), cam, alpha=1.0, colorbar=False)  # alpha 1: only the map shows
    pixels = render(fig)[:, :, :3]
    assert pixels.shape == (100, 100, 3)
    np.testing.assert_allclose(pixels[25, 25], JET_AT_1_DARK_RED, atol=PIXEL_TOLERANCE)    # top-left
    np.testing.assert_allclose(pixels[75, 75], JET_AT_0_DARK_BLUE, atol=PIXEL_TOLERANCE)   # bottom-right
    np.testing.assert_allclose(pixels[25, 75], JET_AT_0_DARK_BLUE, atol=PIXEL_TOLERANCE)   # top-right


def test_overlay_draws_the_image_in_rgb_order_and_blends_with_alpha():
    image = np.zeros((3, 8, 8))
    image[0, :4] = 1.0                                            # top half red (channel 0 = R)
    image[2, 4:] = 1.0                                            # bottom half blue
    fig, ax = full_canvas_axes(100)
    overlay(ax, image, np.zeros((8, 8)), alpha=0.0, colorbar=False)  # alpha 0: only the image shows
    pixels = render(fig)[:, :, :3]
    np.testing.assert_allclose(pixels[25, 50], [1.0, 0.0, 0.0], atol=PIXEL_TOLERANCE)
    np.testing.assert_allclose(pixels[75, 50], [0.0, 0.0, 1.0], atol=PIXEL_TOLERANCE)

    fig, ax = full_canvas_axes(100)
    overlay(ax, image, np.zeros((8, 8)), alpha=0.5, colorbar=False)
    pixels = render(fig)[:, :, :3]
    half_and_half = 0.5 * JET_AT_0_DARK_BLUE + 0.5 * np.array([1.0, 0.0, 0.0])  # (0.5, 0, 0.25)
    np.testing.assert_allclose(pixels[25, 50], half_and_half, atol=PIXEL_TOLERANCE)


def test_overlay_returns_the_map_image_with_title_colorbar_and_no_ticks():
    fig = Figure()
    ax = fig.add_subplot()
    cam = np.linspace(0, 1, 16).reshape(4, 4)
    map_image = overlay(ax, np.ones((4, 4)), cam, title="Grad-CAM", alpha=0.3)
    np.testing.assert_array_equal(map_image.get_array(), cam)
    assert map_image.get_alpha() == 0.3
    assert map_image.get_cmap().name == "jet"
    assert map_image.get_clim() == (0.0, 1.0)
    assert ax.get_title() == "Grad-CAM"
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    colorbar_axes = [other for other in fig.axes if other is not ax]
    assert len(colorbar_axes) == 1
    assert colorbar_axes[0].get_ylabel() == "map value"


def test_overlay_without_colorbar_adds_no_axes():
    fig = Figure()
    overlay(fig.add_subplot(), np.ones((4, 4)), np.zeros((4, 4)), colorbar=False)
    assert len(fig.axes) == 1


def test_overlay_refuses_a_map_of_another_size_naming_both_shapes():
    fig = Figure()
    with pytest.raises(ValueError, match=r"\(7, 7\).*\(3, 32, 32\).*upsampled.*explain"):
        overlay(fig.add_subplot(), np.zeros((3, 32, 32)), np.zeros((7, 7)))


@pytest.mark.parametrize("options, message", [
    ({"alpha": 1.5}, "alpha must be in"),
    ({"vmin": 1.0, "vmax": 0.0}, "vmin must be below vmax"),
])
def test_overlay_refuses_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        overlay(Figure().add_subplot(), np.zeros((4, 4)), np.zeros((4, 4)), **options)


def test_overlay_figure_holds_one_overlay():
    fig = overlay_figure(np.zeros((3, 4, 4)), np.eye(4), title="CAM", colorbar=False)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title() == "CAM"
    np.testing.assert_array_equal(ax.images[1].get_array(), np.eye(4))


# ---- grid ----

def make_grid_inputs(n=3, height=6, width=5):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 3, height, width))
    maps = {"CAM": rng.uniform(size=(n, height, width)), "Grad-CAM": rng.uniform(size=(n, height, width))}
    return images, maps


def test_grid_has_an_image_row_then_one_row_per_method_with_titles_and_labels():
    images, maps = make_grid_inputs(n=3)
    fig = grid(images, maps, column_titles=["cat", "dog", "car"], colorbar=False)
    assert len(fig.axes) == 3 * 3                                 # (2 methods + 1) x 3 images
    axes = np.array(fig.axes).reshape(3, 3)                       # created row by row
    assert [ax.get_title() for ax in axes[0]] == ["cat", "dog", "car"]
    assert [ax.get_title() for ax in axes[1:].ravel()] == [""] * 6
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["input", "CAM", "Grad-CAM"]
    assert [ax.get_ylabel() for ax in axes[:, 1:].ravel()] == [""] * 6
    np.testing.assert_allclose(axes[0, 1].images[0].get_array(), to_display_image(images[1]))
    assert len(axes[0, 1].images) == 1                            # the image row has no map
    np.testing.assert_array_equal(axes[2, 1].images[1].get_array(), maps["Grad-CAM"][1])
    np.testing.assert_allclose(axes[2, 1].images[0].get_array(), to_display_image(images[1]))


def test_grid_row_titles_replace_method_names_and_colorbar_is_shared():
    images, maps = make_grid_inputs(n=2)
    fig = grid(images, maps, row_titles=["class activation map", "gradient-weighted"])
    assert len(fig.axes) == 3 * 2 + 1                             # one shared colorbar
    assert fig.axes[-1].get_ylabel() == "map value"
    assert [fig.axes[i].get_ylabel() for i in (0, 2, 4)] == ["input", "class activation map", "gradient-weighted"]


def test_grid_of_one_image_and_of_images_only():
    images, maps = make_grid_inputs(n=1)
    assert len(grid(images, maps, colorbar=False).axes) == 3
    assert len(grid(images, {}).axes) == 1                        # no maps: no colorbar either


@pytest.mark.parametrize("change, error, message", [
    ({"images": np.zeros((3, 6, 5))}, ValueError, r"\(N, C, H, W\).*x\[None\]"),
    ({"images": np.zeros((3, 2, 6, 5))}, ValueError, r"C = 1 or 3; got shape \(3, 2, 6, 5\)"),
    ({"maps": {"CAM": np.zeros((3, 3, 3))}}, ValueError, r"maps\['CAM'\] has shape \(3, 3, 3\).*\(3, 6, 5\).*explain"),
    ({"maps": [np.zeros((3, 6, 5))]}, TypeError, "maps must be a dict"),
    ({"row_titles": ["only one"]}, ValueError, "row_titles has 1 entries for 2 methods"),
    ({"column_titles": ["a", "b"]}, ValueError, "column_titles has 2 entries for 3 images"),
])
def test_grid_refuses_bad_shapes_and_lengths(change, error, message):
    images, maps = make_grid_inputs(n=3)
    arguments = {"images": images, "maps": maps, **change}
    with pytest.raises(error, match=message):
        grid(**arguments)


# ---- save_figure ----

def red_figure(width_inches=3.0, height_inches=2.0):
    return Figure(figsize=(width_inches, height_inches), facecolor=(1.0, 0.0, 0.0))


def test_save_figure_writes_a_png_of_figsize_times_dpi_pixels(tmp_path):
    folder = tmp_path / "out" / "nested"                          # created on demand
    path = save_figure(red_figure(3.0, 2.0), "demo", folder=folder, dpi=50)
    assert path == folder / "demo.png"
    pixels = imread(path)
    assert pixels.shape[:2] == (2 * 50, 3 * 50)                   # (height, width) = figsize * dpi
    np.testing.assert_allclose(pixels[50, 75, :3], [1.0, 0.0, 0.0])  # the red face colour


def test_save_figure_uses_minicam_out_then_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICAM_OUT", str(tmp_path / "from_env"))
    path = save_figure(red_figure(), "lesson")
    assert path == tmp_path / "from_env" / "lesson.png"
    assert imread(path).shape[:2] == (200, 300)                   # the default dpi is 100

    monkeypatch.delenv("MINICAM_OUT")
    monkeypatch.chdir(tmp_path)
    path = save_figure(red_figure(), "lesson", dpi=10)
    assert path == pathlib.Path("minicam_out") / "lesson.png"     # relative to the current folder
    assert imread(tmp_path / "minicam_out" / "lesson.png").shape[:2] == (20, 30)


@pytest.mark.parametrize("name, file_name", [("a.png", "a.png"), ("b.PNG", "b.PNG"), ("05.cam", "05.cam.png")])
def test_save_figure_adds_png_unless_the_name_has_an_image_suffix(tmp_path, name, file_name):
    path = save_figure(red_figure(), name, folder=tmp_path, dpi=10)
    assert path.name == file_name
    assert imread(path).shape[:2] == (20, 30)


@pytest.mark.parametrize("name, message", [
    ("out/figure", "path separator"),
    ("..\\figure", "path separator"),
    ("", "file name such as"),
    ("..", "file name such as"),
])
def test_save_figure_refuses_names_that_are_not_plain_file_names(tmp_path, name, message):
    with pytest.raises(ValueError, match=message):
        save_figure(red_figure(), name, folder=tmp_path)


def test_save_figure_refuses_an_axes_and_a_folder_that_is_a_file(tmp_path):
    fig = red_figure()
    with pytest.raises(TypeError, match=r"pass ax.figure"):
        save_figure(fig.add_subplot(), "x", folder=tmp_path)
    (tmp_path / "taken").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        save_figure(fig, "x", folder=tmp_path / "taken")


def test_save_figure_leaves_the_figure_usable(tmp_path):
    fig = red_figure()
    save_figure(fig, "first", folder=tmp_path, dpi=10)
    save_figure(fig, "second", folder=tmp_path, dpi=20)             # not closed: saves again
    assert imread(tmp_path / "second.png").shape[:2] == (40, 60)


# ---- no pyplot, no window ----

def test_nothing_is_registered_with_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    images, maps = make_grid_inputs(n=2)
    save_figure(grid(images, maps), "grid", folder=tmp_path, dpi=20)
    save_figure(overlay_figure(images[0], maps["CAM"][0]), "one", folder=tmp_path, dpi=20)
    assert plt.get_fignums() == []


def test_viz_never_imports_pyplot(tmp_path):
    """In a fresh interpreter: building and saving figures leaves pyplot (and so any GUI
    backend) unloaded."""
    script = (
        "import sys, numpy as np\n"
        "from minicam.viz import grid, overlay_figure, save_figure\n"
        "images = np.zeros((2, 1, 4, 4)); maps = {'CAM': np.ones((2, 4, 4))}\n"
        f"save_figure(grid(images, maps), 'grid', folder={str(tmp_path)!r}, dpi=10)\n"
        f"save_figure(overlay_figure(images[0], maps['CAM'][0]), 'one', folder={str(tmp_path)!r}, dpi=10)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=pathlib.Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "one.png").is_file()
