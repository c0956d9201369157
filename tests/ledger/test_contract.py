"""The committed contract artifact is exactly what the pinned solc builds from the source."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ledger.evm.anchor import ARTIFACT, load_artifact
from tests.helpers import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.chain
def test_the_committed_artifact_matches_the_solidity_source(tmp_path: Path) -> None:
    require(
        shutil.which("node") is not None and shutil.which("npm") is not None,
        "node and npm (for solc from the npm registry)",
        "apt-get install -y nodejs npm",
    )
    rebuilt = tmp_path / "LedgerAnchor.json"
    subprocess.run(
        [str(ROOT / "scripts/build_contract.sh"), str(rebuilt)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert rebuilt.read_text() == ARTIFACT.read_text(), (
        "run scripts/build_contract.sh and commit the artifact"
    )


def test_the_artifact_holds_the_anchoring_interface() -> None:
    artifact = load_artifact()
    names = {item.get("name") for item in artifact.abi}
    assert {"anchor", "grantAnchorer", "revokeAnchorer", "rootOf", "BlockAnchored"} <= names
    assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 1000
