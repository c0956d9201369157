"""QR rendering: what we draw, a real QR decoder (zxing-cpp's reader) reads back, and it
verifies."""

from __future__ import annotations

import io
import re

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from ecard.codes import CodeSigner, RenderError, qr_matrix, render_png, render_svg
from ecard.offline import verify
from tests.offline.helpers import (
    NOW,
    ZHEJIANG,
    new_key,
    revocations,
    sign_code,
    trust_store,
    trusted,
)

KEY = new_key()
CODE = sign_code(CodeSigner(ZHEJIANG, KEY))
TRUST = trust_store(trusted(KEY, ZHEJIANG))


def read_qr(image: Image.Image) -> zxingcpp.Barcode:
    found = zxingcpp.read_barcode(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert found is not None and found.valid
    return found


@pytest.mark.parametrize("level", ["L", "M", "Q", "H"])
def test_a_rendered_png_scans_back_to_a_code_that_verifies(level: str) -> None:
    png = render_png(CODE, scale=4, border=4, error_correction=level)  # type: ignore[arg-type]
    scanned = read_qr(Image.open(io.BytesIO(png)))
    assert scanned.text == CODE and scanned.ec_level == level
    assert verify(scanned.text, TRUST, revocations(), NOW).ok


def test_a_typical_code_fits_qr_version_8_at_level_m() -> None:
    assert len(CODE) <= 180
    assert qr_matrix(CODE, "M").version <= 8
    four_character_name = sign_code(CodeSigner(ZHEJIANG, KEY), masked_name="欧阳**")
    assert qr_matrix(four_character_name, "M").version <= 8


def test_scale_and_border_set_the_image_size() -> None:
    image = Image.open(io.BytesIO(render_png(CODE, scale=3, border=2)))
    side = (qr_matrix(CODE).size + 2 * 2) * 3
    assert image.size == (side, side) and image.mode == "1"
    assert image.getpixel((0, 0)) == 255  # the quiet zone is light


def svg_to_image(svg: str, scale: int) -> Image.Image:
    """Rasterise the one path our SVG has (M x y h w v1 h-w z runs) to check its geometry."""
    side = int(re.search(r'viewBox="0 0 (\d+) \1"', svg).group(1))  # type: ignore[union-attr]
    image = Image.new("L", (side * scale, side * scale), 255)
    draw = ImageDraw.Draw(image)
    for x, y, width in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\3z", svg):
        x0, y0 = int(x) * scale, int(y) * scale
        draw.rectangle((x0, y0, x0 + int(width) * scale - 1, y0 + scale - 1), fill=0)
    return image


def test_a_rendered_svg_scans_back_to_the_code() -> None:
    svg = render_svg(CODE, scale=5, border=4)
    side = qr_matrix(CODE).size + 8
    assert f'width="{side * 5}"' in svg
    assert read_qr(svg_to_image(svg, 4)).text == CODE


def test_bad_rendering_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        render_png(CODE, scale=0)
    with pytest.raises(ValueError):
        render_svg(CODE, border=-1)
    with pytest.raises(ValueError):
        render_png(CODE, error_correction="X")  # type: ignore[arg-type]
    with pytest.raises(RenderError):
        render_png("A" * 5000, error_correction="H")
