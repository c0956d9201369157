"""QR rendering of code text: PNG bytes and SVG text.

The symbol is made by zxing-cpp's writer (C++, about 20x faster than pure-Python qrcode/segno;
see scripts/bench/bench_code_format.py) and drawn as a 1-bit PNG by Pillow or as one SVG path.
``EC1:`` text uses only QR alphanumeric characters, so the writer encodes it in alphanumeric mode.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import zxingcpp
from PIL import Image, ImageOps

ErrorCorrection = Literal["L", "M", "Q", "H"]
MAX_SCALE = 64
MAX_BORDER = 16
_DARK = 0  # zxing-cpp images: 0 is a dark module, 255 a light one


class RenderError(ValueError):
    """The text does not fit in any QR symbol at this error-correction level."""


@dataclass(frozen=True, slots=True)
class QrMatrix:
    size: int  # modules per side, without the quiet zone
    modules: bytes  # row-major, one byte per module: 0 dark, 255 light

    @property
    def version(self) -> int:
        return (self.size - 17) // 4


def _check_layout(scale: int, border: int) -> None:
    if not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be 1-{MAX_SCALE} pixels per module")
    if not 0 <= border <= MAX_BORDER:
        raise ValueError(f"border must be 0-{MAX_BORDER} modules (the QR standard asks for 4)")


def qr_matrix(text: str, error_correction: ErrorCorrection = "M") -> QrMatrix:
    if error_correction not in ("L", "M", "Q", "H"):
        raise ValueError("error correction is one of L, M, Q, H")
    try:
        symbol = zxingcpp.create_barcode(
            text, zxingcpp.BarcodeFormat.QRCode, ec_level=error_correction
        )
    except ValueError as exc:
        raise RenderError(str(exc)) from None
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    return QrMatrix(size=image.shape[0], modules=bytes(memoryview(image)))


def render_png(
    text: str, *, scale: int = 8, border: int = 4, error_correction: ErrorCorrection = "M"
) -> bytes:
    """A 1-bit grayscale PNG, ``scale`` pixels per module, ``border`` light modules around."""
    _check_layout(scale, border)
    matrix = qr_matrix(text, error_correction)
    image = Image.frombytes("L", (matrix.size, matrix.size), matrix.modules)
    image = ImageOps.expand(image.convert("1", dither=Image.Dither.NONE), border, fill=255)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    # zlib level 1: ~30 % more images/s than the default for ~300 more bytes (about 1.2 kB)
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def render_svg(
    text: str, *, scale: int = 8, border: int = 4, error_correction: ErrorCorrection = "M"
) -> str:
    """An SVG whose dark modules are one path of horizontal runs (small and crisp at any size)."""
    _check_layout(scale, border)
    matrix = qr_matrix(text, error_correction)
    size = matrix.size
    runs: list[str] = []
    for y in range(size):
        row = matrix.modules[y * size : (y + 1) * size]
        x = 0
        while x < size:
            if row[x] != _DARK:
                x += 1
                continue
            start = x
            while x < size and row[x] == _DARK:
                x += 1
            runs.append(f"M{start + border} {y + border}h{x - start}v1h-{x - start}z")
    side = size + 2 * border
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" '
        f'width="{side * scale}" height="{side * scale}" shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>'
    )
