"""Decoding one image into pixels. Every image that enters cnnclf (training, evaluation, predict, the
server, the data grid) is decoded by decode_image, so the resize policy and the limits are the
same everywhere.

Only the formats in FORMATS are opened (an allow-list handed to Pillow, which otherwise opens
every format it knows: a file that is really PostScript, whatever its name, would go to
Ghostscript, an interpreter). An EXIF block Pillow cannot read is ignored, the image used as
stored. An image of more than MAX_PIXELS (64 megapixels: a 61-megapixel camera's photos pass; a
12000x12000 PNG, which would take 432 MB decoded, does not) is refused from its header, before
its pixels are decoded.
"""

import contextlib
import io
import struct
import zipfile
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps

from cnnclf.errors import first_line

MAX_PIXELS = 64_000_000
# The Pillow formats of those suffixes, the only ones opened (a camera JPEG with a second picture, MPO, opens as JPEG)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
# EXIF orientation -> the turn that makes the picture upright (Pillow's exif_transpose's table, applied
# without rewriting the EXIF block, which fails on a malformed one)
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# cnnclf checks the size itself (decode_image), from the header and with its own message; Pillow's
# own check would first print a warning for images between its limit and twice that.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """A file that is not a usable image; the message says why."""


class ImageTooLarge(ImageError):
    """An image of more pixels than MAX_PIXELS."""


# What decoding a file can raise: Pillow's errors, a damaged zip entry, or ours.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, zipfile.BadZipFile, EOFError)


def decode_image(
    data: bytes | BinaryIO, shape: tuple[int, int, int], policy: str = "stretch", resize: bool = True
) -> np.ndarray:
    """Encoded image bytes (or a file open for reading) -> uint8 (height, width, channels): turned
    upright by its EXIF orientation, 16-bit and float images scaled to 0-255, converted to the shape's
    channels and, when `resize`, brought to its size by `policy`: stretch, crop (the centre, at the
    shape's aspect) or pad (letterbox, black bars). Raises one of DECODE_ERRORS, whatever the bytes."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    with _damage_named(), open_image(stream) as opened:
        if opened.width * opened.height > MAX_PIXELS:
            raise ImageTooLarge(
                f"{opened.width}x{opened.height} is {opened.width * opened.height / 1e6:.1f} "
                f"megapixels, more than cnnclf's limit of {MAX_PIXELS / 1e6:.0f}; downscale it"
            )
        return fit_image(_upright(_eight_bit(opened)), shape, policy, resize)


def fit_image(image: Image.Image, shape: tuple[int, int, int], policy: str = "stretch", resize: bool = True):
    """A picture -> uint8 (height, width, channels): converted to the shape's channels and, when
    `resize`, brought to its size by `policy` (decode_image's last step; the Python API's for arrays)."""
    height, width, channels = shape
    image = image.convert("L" if channels == 1 else "RGB")
    if resize and image.size != (width, height):
        if policy == "crop":
            image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
        elif policy == "pad":
            image = ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR, color=0)
        else:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


@contextlib.contextmanager
def _damage_named():
    """What Pillow's format plugins raise on some malformed files instead of an OSError (struct.error,
    TypeError, ...), raised as ImageError: one of DECODE_ERRORS, whatever the bytes."""
    try:
        yield
    except DECODE_ERRORS:
        raise
    except (struct.error, TypeError, AttributeError, IndexError, KeyError, ZeroDivisionError) as e:
        raise ImageError(f"a damaged image ({e.__class__.__name__}: {str(e)[:100]})") from None


def open_image(stream: BinaryIO) -> Image.Image:
    """Pillow's image, opened lazily (the header read, not the pixels) in one of FORMATS only."""
    try:
        return Image.open(stream, formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageError(f"not an image in a format cnnclf reads: {', '.join(FORMATS[:-1])} or {FORMATS[-1]}") from None


def _upright(image: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation; as stored where the EXIF block cannot be read."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block, whatever Pillow raises for it, is ignored
        return image
    turn = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(turn) if turn is not None else image


def reason(error: Exception) -> str:
    """What went wrong decoding a file, in one line (Pillow names its buffer, not the file: the
    caller names the file)."""
    return f"{error.__class__.__name__}: {first_line(str(error))}"


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images scaled to 0-255 (Pillow's convert would clip them), float
    ones taken as 0-1 when they stay within it, else as 0-255."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8), "L")
    return image


def image_header(stream) -> tuple[int, int, str]:
    """(height, width, colour mode) from an image file's header, without decoding its pixels."""
    with _damage_named(), open_image(stream) as image:
        return image.height, image.width, image.mode
