"""The signed QR code: signing (format), e-license signing, rendering.

The format's parser and the verifier live in :mod:`ecard.offline` so terminals can reuse them.
"""

from ecard.codes.elicense import sign_elicense
from ecard.codes.format import CodeSigner
from ecard.codes.render import (
    ErrorCorrection,
    QrMatrix,
    RenderError,
    qr_matrix,
    render_png,
    render_svg,
)

__all__ = [
    "CodeSigner",
    "ErrorCorrection",
    "QrMatrix",
    "RenderError",
    "qr_matrix",
    "render_png",
    "render_svg",
    "sign_elicense",
]
