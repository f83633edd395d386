"""Every lesson runs as a plain script, in fast mode, exits 0 and saves its figures.

Lessons assert their own math, so a lesson that runs to the end has checked
itself. Each lesson names its figures "NN_..." (its number first); the test
checks that at least one such PNG was written and that every file is a real,
non-empty PNG.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LESSONS_DIR = REPO / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _path(*first):
    """PYTHONPATH for a lesson subprocess: `first`, then this checkout (so the lessons
    import this minicam even when it is not installed), then the caller's path."""
    parts = [str(p) for p in first] + [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts)


def test_there_are_lessons():
    assert len(LESSONS) >= 13, f"expected at least 13 numbered lessons in {LESSONS_DIR}, found {len(LESSONS)}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_in_fast_mode_and_saves_its_figures(lesson, tmp_path):
    env = dict(os.environ, MINICAM_FAST="1", MPLBACKEND="Agg", MINICAM_OUT=str(tmp_path), PYTHONPATH=_path())
    result = subprocess.run([sys.executable, str(lesson)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    number = lesson.name[:2]
    figures = sorted(tmp_path.glob(f"{number}_*.png"))
    if "optional extra" in lesson.read_text() and "skipped:" in result.stdout:
        return  # a lesson that needs an optional package exits cleanly without it
    assert figures, f"{lesson.name} saved no figure named {number}_*.png in MINICAM_OUT"
    for figure in figures:
        assert figure.read_bytes()[:8] == PNG_SIGNATURE, f"{figure.name} is not a PNG"
        assert figure.stat().st_size > 2000, f"{figure.name} is suspiciously small"


def test_lessons_open_as_notebooks():
    """jupytext reads each lesson as a notebook: a markdown header cell, then code and markdown cells."""
    jupytext = pytest.importorskip("jupytext")
    for lesson in LESSONS:
        notebook = jupytext.read(lesson)
        kinds = [cell.cell_type for cell in notebook.cells]
        assert kinds[0] == "markdown" and "code" in kinds, lesson.name
        header = notebook.cells[0].source
        assert f"Lesson {lesson.name[:2]}" in header or "Appendix" in header, f"{lesson.name}: header cell"
        for section in ("Objectives", "Prerequisites", "Code you will read", "Time"):
            assert section in header, f"{lesson.name}: the header lacks {section!r}"
        text = lesson.read_text()
        for section in ("Exercises", "Instructor notes"):
            assert section in text, f"{lesson.name} lacks a {section!r} section"


def test_the_real_image_lesson_exits_cleanly_without_its_optional_extra(tmp_path):
    """With scikit-learn hidden (a stand-in package that fails to import), the appendix says
    what to install and exits 0."""
    real_images = [p for p in LESSONS if "real_images" in p.name]
    if not real_images:
        pytest.skip("no real-image lesson")
    fake = tmp_path / "fake_site" / "sklearn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('scikit-learn is hidden by the test')\n")
    env = dict(os.environ, MINICAM_FAST="1", MPLBACKEND="Agg", MINICAM_OUT=str(tmp_path),
               PYTHONPATH=_path(tmp_path / "fake_site"))
    result = subprocess.run([sys.executable, str(real_images[0])], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped:" in result.stdout and "pip install" in result.stdout
