"""``ecard demo run``: the whole story against a real server, embedded and scaled out, and what
its server logged holds no personal data and no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

STEPS = 17


def run_demo(workdir: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ECARD_")}
    return subprocess.run(
        [sys.executable, "-m", "ecard.cli", "demo", "run", "--workdir", str(workdir), *options],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,  # the tests read the exit status and the output
    )


def secrets_and_personal_data(workdir: Path) -> list[str]:
    actors = json.loads((workdir / "demo.json").read_text(encoding="utf-8"))
    holder = actors["holder"]
    values = [
        holder["name"],
        holder["identity_number"],
        holder["card_number"],
        holder["access_token"],
        holder["refresh_token"],
        actors["operator"]["password"],
        actors["terminal"]["private_jwk"]["d"],
        holder["password"],
        actors["channel"]["private_jwk"]["d"],
    ]
    values += [
        actors[kind]["client_secret"]
        for kind in ("channel", "department", "verifier", "relying_party")
    ]
    return values


def assert_story_told(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.count("✓") == STEPS and "all steps behaved as described" in result.stdout


def test_the_demo_walks_every_step_on_the_embedded_defaults(tmp_path: Path) -> None:
    result = run_demo(tmp_path, {})
    assert_story_told(result)
    log = (tmp_path / "server.log").read_text(encoding="utf-8")
    assert '"route": "/verifier/v1/verifications"' in log  # the log is the server's request log
    for value in secrets_and_personal_data(tmp_path):
        assert value not in log and value not in result.stdout


@pytest.mark.timeout(400)
def test_the_demo_runs_unchanged_on_two_workers_with_postgresql_and_redis(
    tmp_path: Path, migrated_postgres_url: str, redis_url: str
) -> None:
    result = run_demo(
        tmp_path,
        {
            "ECARD_DATABASE_URL": migrated_postgres_url,
            "ECARD_REDIS_URL": redis_url,
            "ECARD_REDIS_PREFIX": f"demo-{uuid.uuid4().hex[:8]}:",
            "ECARD_KEYS_DIR": str(tmp_path / "keys"),
        },
        "--workers",
        "2",
    )
    assert_story_told(result)
