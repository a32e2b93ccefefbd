"""What reaches cnnclf from outside, unit by unit (issue 37): files read only when they are regular and
bounded, images opened only in the formats cnnclf reads, a malformed EXIF block ignored, secrets
masked in every form a URL carries them, and names that a terminal or a spreadsheet would act on
made inert."""

import io
import os
import struct
import threading
import time

import numpy as np
import pytest
from PIL import Image

from cnnclf.data.decoding import DECODE_ERRORS, ImageError, decode_image
from cnnclf.reading import NotReadable, kind_of, open_regular, read_regular
from cnnclf.redaction import masked, masked_argv

POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke showpage\n"


def jpeg_with_exif(entries, size=(12, 8)) -> bytes:
    """A JPEG whose EXIF block holds `entries`, (tag, type, count, value bytes), written raw (big-endian
    TIFF), so that a tag may carry a type its name does not allow."""
    ifd = struct.pack(">H", len(entries))
    extra, base = b"", 8 + 2 + 12 * len(entries) + 4
    for tag, kind, count, value in sorted(entries):
        if len(value) <= 4:
            ifd += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            ifd += struct.pack(">HHII", tag, kind, count, base + len(extra))
            extra += value
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + ifd + b"\0\0\0\0" + extra
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[0, 0] = 255  # the top-left corner, to see where a turn takes it
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", exif=b"Exif\x00\x00" + tiff, quality=100)
    return out.getvalue()


ORIENTATION_6 = (0x0112, 3, 1, struct.pack(">H", 6))  # turned 90 degrees: 12x8 stored, 8x12 upright


@pytest.mark.parametrize("bad_tag", [
    (0x0131, 5, 1, struct.pack(">II", 1, 0)),  # Software as a rational: Pillow's EXIF writer fails (AttributeError)
    (0x0213, 4, 1, struct.pack(">I", 99999)),  # YCbCrPositioning too large for its short (struct.error)
    (0x0100, 2, 9, b"abcdefgh\0"),  # ImageWidth as text (struct.error)
])
def test_a_malformed_exif_block_is_ignored_and_the_orientation_kept(bad_tag):
    pixels = decode_image(jpeg_with_exif([ORIENTATION_6, bad_tag]), (8, 12, 3), resize=False)
    assert pixels.shape == (12, 8, 3)  # turned upright, as without the bad tag
    assert pixels[0, -1].mean() > 200  # the stored top-left corner is now top-right (a 270-degree turn)


def test_an_orientation_of_the_wrong_type_leaves_the_image_as_stored():
    wrong = (0x0112, 2, 4, b"six\0")
    assert decode_image(jpeg_with_exif([wrong]), (8, 12, 3), resize=False).shape == (8, 12, 3)


@pytest.mark.parametrize("data, reason", [
    (POSTSCRIPT, "not an image in a format cnnclf reads: PNG, JPEG, BMP, GIF, WEBP, TIFF or PPM"),
    (b"%PDF-1.4\n" + b"0" * 64, "not an image in a format cnnclf reads"),
    (b"\x00\x00\x01\x00" + b"\x00" * 60, "not an image in a format cnnclf reads"),  # an icon (ICO)
])
def test_only_the_formats_cnnclf_reads_reach_pillow(data, reason, monkeypatch):
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript was started"))
    with pytest.raises(ImageError, match=reason):
        decode_image(data, (8, 8, 1))


def test_whatever_a_format_plugin_raises_is_a_decode_error(monkeypatch):
    from PIL import PngImagePlugin

    def broken(self, *args):
        raise struct.error("unpack requires a buffer")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", broken)
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(out, "PNG")
    with pytest.raises(DECODE_ERRORS, match=r"a damaged image \(error: unpack requires a buffer\)"):
        decode_image(out.getvalue(), (8, 8, 1))


def test_a_fifo_and_a_device_are_refused_without_waiting(tmp_path):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    zero = tmp_path / "z.png"
    zero.symlink_to("/dev/zero")
    outcome = {}

    def read_all():
        for path in (fifo, zero):
            try:
                read_regular(path, 1 << 20)
            except NotReadable as e:
                outcome[path.name] = str(e)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # it waits on the FIFO: let it go, and fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO waited for a writer")
    assert outcome == {"f.png": "not a regular file (a FIFO)", "z.png": "not a regular file (a character device)"}
    assert kind_of(fifo) == "a FIFO" and kind_of(zero) == "a character device" and kind_of(tmp_path) is None


def test_a_large_file_is_refused_before_it_is_read(tmp_path):
    video = tmp_path / "clip.jpg"
    with open(video, "wb") as f:
        f.truncate(2 * 2**30)  # 2 GiB, sparse: nothing is written, and nothing may be read
    started = time.monotonic()
    with pytest.raises(NotReadable, match=r"2,147,483,648 bytes, more than cnnclf reads of such a file"):
        open_regular(video, 512 * 2**20)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("text, shown", [
    ("postgresql://cnnclf:hunter2@db:5432/studies", "postgresql://cnnclf:***@db:5432/studies"),
    ("postgresql://cnnclf:hun@ter2@db/studies", "postgresql://cnnclf:***@db/studies"),  # an unencoded @
    ("mysql://:hunter2@db/studies", "mysql://:***@db/studies"),
    ("postgresql://cnnclf@db/studies?sslmode=require&password=hunter2", "postgresql://cnnclf@db/studies?sslmode=require&password=***"),
    ("host=db PASSWORD=hunter2 dbname=x", "host=db PASSWORD=*** dbname=x"),
    ("https://mlflow.example/?token=hunter2#x", "https://mlflow.example/?token=***#x"),
    ("error at postgresql://me:hunter2@db/s: refused", "error at postgresql://me:***@db/s: refused"),
    ("postgresql://cnnclf@db.example:5432/studies", "postgresql://cnnclf@db.example:5432/studies"),  # nothing to hide
    ("sqlite:////tmp/runs/tune-x/study.db max_tokens=3", "sqlite:////tmp/runs/tune-x/study.db max_tokens=3"),
])
def test_a_password_is_masked_in_every_form_a_url_carries_it(text, shown):
    assert masked(text) == shown


def test_a_secret_environment_value_and_a_secret_option_are_masked(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "s3cret-Pa55")
    monkeypatch.setenv("HOME_DIR", "s3cret-Pa55-not-a-secret-name")
    assert masked("connecting with s3cret-Pa55 failed") == "connecting with *** failed"
    assert masked_argv(["cnnclf", "tune", "c.yaml", "--password", "xyz", "--storage", "postgresql://a:b@h/d"]) == [
        "cnnclf", "tune", "c.yaml", "--password", "***", "--storage", "postgresql://a:***@h/d"]


def test_log_lines_are_masked_before_any_handler_writes_them(caplog):
    import logging

    import cnnclf  # noqa: F401 - adds the filter to the cnnclf logger

    with caplog.at_level(logging.INFO, logger="cnnclf"):
        logging.getLogger("cnnclf").info("study in %s", "postgresql://me:hunter2@db/s")
    assert caplog.messages == ["study in postgresql://me:***@db/s"]


def test_names_a_spreadsheet_or_a_terminal_would_act_on_are_made_inert():
    from cnnclf.inference.evaluate import metrics_table
    from cnnclf.inference.predict import table

    rows = [{"file": "=HYPERLINK(\"x\").png", "class": "@cmd", "probability": 0.9, "unknown": False,
             "top_k": [{"class": "@cmd", "probability": 0.9}, {"class": "\x1b[31mred\u202e", "probability": 0.1}]}]
    cells = table(rows, columns=True)[0]
    assert cells[:2] == ["'=HYPERLINK(\"x\").png", "'@cmd"] and cells[6] == "\\x1b[31mred\\u202e"
    assert table(rows)[0][5] == "\\x1b[31mred\\u202e 0.1000"
    per_class = {"\x1b[2J": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    shown = metrics_table({"class_names": ["\x1b[2J"], "per_class": per_class, "test_loss": 0.1, "test_accuracy": 1.0,
                           "balanced_accuracy": 1.0, "macro_f1": 1.0, "test_images": 1})
    assert "\x1b" not in shown and "\\x1b[2J" in shown
