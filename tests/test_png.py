"""The PNG encoder of the figures: lossless, valid, the resolution recorded as Pillow does."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alliance_analysis.report.png import SIGNATURE, png_bytes, write_png


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked."""
    assert data[:8] == SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        at += 12 + length
    return chunks


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (37, 53)])
def test_pixels_survive_a_round_trip(shape: tuple[int, int]) -> None:
    # random bytes exercise the filter's wrap-around (a byte below the one above it)
    rgba = np.random.default_rng(1).integers(0, 256, (*shape, 4), dtype=np.uint8)
    image = Image.open(io.BytesIO(png_bytes(rgba, 300)))
    assert image.mode == "RGBA" and image.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(image), rgba)


def test_chunks_and_resolution_as_pillow_writes_them(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[1:3, 2:5] = (255, 0, 0, 255)
    ours = write_png(tmp_path / "ours.png", rgba, dpi=300)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "pillow.png", dpi=(300, 300))
    assert [kind for kind, _ in _chunks(ours.read_bytes())] == [b"IHDR", b"pHYs", b"IDAT",
                                                                 b"IEND"]
    pillow = dict(_chunks((tmp_path / "pillow.png").read_bytes()))
    mine = dict(_chunks(ours.read_bytes()))
    assert mine[b"IHDR"] == pillow[b"IHDR"] and mine[b"pHYs"] == pillow[b"pHYs"]
    assert Image.open(ours).info["dpi"] == Image.open(tmp_path / "pillow.png").info["dpi"]
    # every row filtered with Up (type 2)
    raw = zlib.decompress(mine[b"IDAT"])
    assert [raw[row * (6 * 4 + 1)] for row in range(4)] == [2, 2, 2, 2]


def test_the_same_pixels_give_the_same_bytes() -> None:
    rgba = np.random.default_rng(2).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    assert png_bytes(rgba, 300) == png_bytes(rgba.copy(), 300)


@pytest.mark.parametrize("bad", [np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 4), float),
                                 np.zeros((3, 4), np.uint8)])
def test_other_arrays_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 pixels of shape"):
        png_bytes(bad, 300)
