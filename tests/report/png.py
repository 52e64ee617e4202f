"""A tiny PNG reader (zlib only): enough to tell a drawn image from a blank one in tests."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    pixels: bytes  # rows of width × channels bytes, unfiltered

    def colours(self, step: int = 1) -> set[bytes]:
        """The distinct pixel values (every ``step``-th pixel of every ``step``-th row)."""
        c, row = self.channels, self.width * self.channels
        return {self.pixels[y * row + x * c : y * row + x * c + c]
                for y in range(0, self.height, step) for x in range(0, self.width, step)}  # fmt: skip

    def share_not(self, colour: bytes, step: int = 1) -> float:
        """Fraction of the sampled pixels that differ from ``colour``."""
        c, row = self.channels, self.width * self.channels
        samples = [self.pixels[y * row + x * c : y * row + x * c + c]
                   for y in range(0, self.height, step) for x in range(0, self.width, step)]  # fmt: skip
        return sum(s != colour for s in samples) / len(samples)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def read_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced greyscale/RGB/RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    assert depth == 8 and interlace == 0, (depth, interlace)
    raw, stride, c = zlib.decompress(bytes(idat)), width * channels, channels
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(c, stride):
                line[i] = (line[i] + line[i - c]) & 0xFF
        elif kind == 2:  # Up
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - c] if i >= c else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                left, corner = (line[i - c], prev[i - c]) if i >= c else (0, 0)
                line[i] = (line[i] + _paeth(left, prev[i], corner)) & 0xFF
        out += line
        prev = line
    return Image(width, height, channels, bytes(out))
