"""The service-hall verifier page (扫码亮证核验): one static HTML page, its script and styles.

The page runs no inline script or style, so the platform's page CSP applies unchanged.
"""

from __future__ import annotations

from pathlib import Path

VERIFIER_DIR = Path(__file__).parent
STATIC_DIR = VERIFIER_DIR / "static"
PAGE_HTML = (VERIFIER_DIR / "verifier.html").read_text(encoding="utf-8")
