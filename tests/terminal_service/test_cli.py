"""``ecard terminal simulate``: the whole offline day runs and reconciles cleanly."""

from __future__ import annotations

import argparse

import pytest

from ecard.terminal.cli import register


def test_simulate_prints_a_clean_reconciliation(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["terminal", "simulate", "--workdir", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert '"records": 4' in out and '"anomalies": {}' in out and '"already_used"' in out
