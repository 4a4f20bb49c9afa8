"""Image files as they come from a crawl: read without hanging, decode to 8-bit RGB.

One decoder for detection (``data/detect.py``) and training (``data/images.py``), so that both see
the same pixels (docs/data.md, "Images as they come"):

- **Only regular files are read.** A folder, a FIFO, a socket, a device or a dangling symlink named
  ``<IMGID>.jpg`` is refused (:class:`NotARegularFile`, an ``OSError``) without being opened for
  reading: a FIFO is opened non-blocking and checked with ``fstat`` before any read, so it can
  never hang a run. The callers count such a file as unreadable.
- **16-bit images keep their intensities.** A 16-bit greyscale PNG (Pillow mode ``I;16``, or ``I``)
  is scaled to 8 bits (``round(v * 255 / 65535)``) before the RGB conversion; Pillow's own
  ``convert("RGB")`` clips every value above 255 to white. 16-bit colour PNGs are already reduced
  to 8 bits per channel by Pillow.
- **EXIF orientation is ignored**: the pixels are used as stored, as Pillow reads them and as
  HVPNeT's and MKGformer's loaders read them (``Image.open(...).convert("RGB")``). Boxes of
  ``objects.jsonl`` are therefore in the stored frame, for detection and for training alike.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class NotARegularFile(OSError):
    """The path exists (or is a symlink) but is not a regular file; the message says what it is."""


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words (``a folder``, ``a FIFO``, ...)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular_reason(path: str | Path) -> str | None:
    """None when ``path`` is a regular file (symlinks followed); else why it cannot be read as one
    (``a folder``, ``a dangling symlink``, ``a FIFO``, ...). A path that does not exist at all is
    ``not found``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a dangling symlink" if os.path.islink(path) else "not found"
    except OSError as err:
        return err.strerror or type(err).__name__
    return None if stat.S_ISREG(st.st_mode) else file_kind(st.st_mode)


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file, never blocking on a FIFO.

    Raises:
        FileNotFoundError: nothing at ``path`` (a dangling symlink is :class:`NotARegularFile`).
        NotARegularFile: a folder, FIFO, socket, device or dangling symlink.
        OSError: the file cannot be read (permissions, I/O).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise NotARegularFile(f"{path}: a dangling symlink") from None
        raise
    except IsADirectoryError:
        raise NotARegularFile(f"{path}: a folder") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{path}: {file_kind(mode)}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of a decoded image: 16-bit greyscale scaled to 8 bits (not clipped), the other
    modes through Pillow's conversion. Forces the full decode (a truncated file raises here)."""
    img.load()
    if img.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(img, dtype=np.int64)  # (H, W)
        eight = ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    return img.convert("RGB")


def decode_rgb(data: bytes | str | Path) -> Image.Image:
    """Decode an image (its bytes, or a path read with :func:`read_file_bytes`) to 8-bit RGB,
    EXIF orientation ignored.

    Raises:
        OSError: not a regular file, unreadable, or not an image Pillow decodes (also truncated).
        ValueError, Image.DecompressionBombError: as Pillow raises them.
    """
    raw = data if isinstance(data, bytes) else read_file_bytes(data)
    with Image.open(io.BytesIO(raw)) as img:
        return to_rgb(img)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image's header only."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size
