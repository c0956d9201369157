"""``ecard webhooks deliver`` runs one delivery pass against the configured database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_webhooks_deliver_runs_one_pass(tmp_path: Path, keys_dir: str) -> None:
    env = {
        **os.environ,
        "ECARD_DATABASE_URL": f"sqlite:///{tmp_path}/ecard.db",
        "ECARD_KEYS_DIR": keys_dir,
        "ECARD_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ecard.cli", "webhooks", "deliver", "--limit", "10"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 delivered (0 due, 0 to retry or failed)"
