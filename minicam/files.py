"""Writing files safely: whole or not at all, and only over minicam's own files.

Three rules, for every file minicam writes (figures, weights, JSON, markdown, npz):

1. Atomic. The file is written to a temporary file in the same folder, then renamed
   into place (os.replace): a reader, or a second minicam run writing the same path
   at the same time, sees the old file or the new one, never a mix of the two.
2. minicam overwrites only what minicam wrote. Every file carries a mark of its
   author, and an existing file without the mark is refused (force=True, or a
   command's --force, overrides):
       .png               the text chunk Software = "minicam ..."
       .jpg .jpeg         the JPEG comment "minicam ..."
       .svg .pdf          the document's Creator "minicam ..."
       .json              the top-level key "written_by": "minicam ..."
       .md                a first line "<!-- written by minicam ... -->"
       .npz               an entry "written_by" holding "minicam ..."
3. No links. A path that is a symbolic link is refused: the rename would replace
   the link, and following it could write outside the folder the user named.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

MARK = "minicam"
MARK_KEY = "written_by"  # the key of the mark in .json and .npz files
MARKDOWN_MARK = f"<!-- written by {MARK} -->"


class FileRefused(ValueError):
    """minicam will not write this path (a file it did not write, a link, a file where a folder should be)."""


# ----------------------------------------------------------------------------
# Whose file is this?
# ----------------------------------------------------------------------------


def written_by_minicam(path) -> bool:
    """Whether the file at `path` carries minicam's mark (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".png", ".jpg", ".jpeg"):
            from PIL import Image  # matplotlib's own dependency

            with Image.open(path) as image:
                text = image.info.get("Software") or image.info.get("comment") or ""
            return MARK in (text.decode("latin-1") if isinstance(text, bytes) else str(text))
        if suffix in (".svg", ".pdf"):  # the Creator field sits near the start of both formats
            with open(path, "rb") as f:
                return MARK.encode() in f.read(1 << 16)
        if suffix == ".json":
            data = json.loads(path.read_text())
            return isinstance(data, dict) and str(data.get(MARK_KEY, "")).startswith(MARK)
        if suffix == ".md":
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.readline().startswith(MARKDOWN_MARK)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return MARK_KEY in data.files and str(data[MARK_KEY]).startswith(MARK)
    except (OSError, ValueError, KeyError):  # unreadable, or not what its suffix says: not ours
        return False
    return False


def check_writable(path, force: bool = False) -> Path:
    """Refuse (FileRefused) a path minicam must not write; return it as a Path.

    Refused: a symbolic link; a folder; an existing file without minicam's mark (unless
    force). A missing parent folder is fine (it is created when the file is written).
    """
    path = Path(path)
    if path.is_symlink():
        raise FileRefused(f"{path} is a symbolic link; minicam does not write through links. Remove the link or "
                          "choose another path")
    if path.is_dir():
        raise FileRefused(f"{path} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FileRefused(f"{parent} is a file, so {path} cannot be created; choose another folder")
            break
    if path.exists() and not force and not written_by_minicam(path):
        raise FileRefused(f"{path} exists and was not written by minicam; minicam will not overwrite it. "
                          "Choose another name or folder, remove the file, or pass --force (force=True)")
    return path


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------


def write_atomically(path, write, force: bool = False) -> Path:
    """Call write(temporary_path), then rename the temporary file to `path`; return `path`.

    The temporary file is in the same folder (so the rename is atomic) and keeps the
    suffix (so np.savez and savefig see the right format). On any error it is removed
    and `path` is left as it was.
    """
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; a file gets the usual rights
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def write_text(path, text: str, force: bool = False) -> Path:
    """Text (.md: minicam's mark is added as the first line)."""
    if Path(path).suffix.lower() == ".md" and not text.startswith(MARKDOWN_MARK):
        text = f"{MARKDOWN_MARK}\n{text}"
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), force)


def write_json(path, data: dict, force: bool = False) -> Path:
    """A JSON object, with minicam's mark as its first key."""
    marked = {MARK_KEY: MARK, **{k: v for k, v in data.items() if k != MARK_KEY}}
    return write_text(path, json.dumps(marked, indent=1) + "\n", force)


def write_npz(path, arrays: dict, force: bool = False) -> Path:
    """Arrays in an uncompressed .npz (loadable with allow_pickle=False), with minicam's mark."""
    if MARK_KEY in arrays:
        raise ValueError(f"{MARK_KEY!r} is reserved for minicam's mark; rename that array")
    marked = {**arrays, MARK_KEY: np.array(MARK)}
    return write_atomically(path, lambda temporary: np.savez(temporary, **marked), force)


def save_matplotlib_figure(fig, path, dpi: int, force: bool = False) -> Path:
    """A matplotlib figure, with minicam's mark in the file's metadata."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        options = {"metadata": {"Software": MARK}}
    elif suffix in (".svg", ".pdf"):
        options = {"metadata": {"Creator": MARK}}
    elif suffix in (".jpg", ".jpeg"):
        options = {"pil_kwargs": {"comment": MARK.encode()}}
    else:
        raise ValueError(f"{path}: figures are written as .png, .jpg, .jpeg, .svg or .pdf, not {suffix or 'no suffix'}")
    return write_atomically(path, lambda temporary: fig.savefig(temporary, dpi=dpi, **options), force)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
