"""Photograph the operator console's main pages into docs/screenshots/ (console-*.png).

Runs the console's Chromium test (tests/console/test_console_browser.py), which starts a real
``ecard serve`` on a loopback port, signs in, finds a person, reports a card lost, approves a
filing and looks at the pages as a readonly operator, taking a PNG of each main page on the way.

Needs Chromium (scripts/install_browser.sh), playwright, and a CJK font for legible Chinese
(Debian: ``apt-get install fonts-wqy-microhei``).

Usage: .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/console/test_console_browser.py"


def cjk_font_installed() -> bool:
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(
        ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False
    )
    return bool(listed.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "screenshots",
        help="folder for the PNG files (default: docs/screenshots)",
    )
    args = parser.parse_args(argv)
    if not cjk_font_installed():
        print("warning: no CJK font found; Chinese text will show as boxes", file=sys.stderr)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "ECARD_CONSOLE_SCREENSHOTS": str(out)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=environ,
        check=False,
    )
    if done.returncode == 0:
        for png in sorted(out.glob("console-*.png")):
            print(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
