"""The channel's signing example in docs/front-door.md makes evidence the platform accepts."""

from __future__ import annotations

import re
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.jwk import public_jwk
from ecard.registry.evidence import check_evidence
from tests.helpers import identity_number

DOC = Path(__file__).resolve().parents[2] / "docs" / "front-door.md"


def test_the_documented_signing_example_makes_accepted_evidence() -> None:
    example = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(example, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    key = ec.generate_private_key(ec.SECP256R1())
    number = identity_number()
    token = namespace["evidence"](
        key, "ch_app", "https://ecard.example.test", number.lower(), "check-42"
    )
    accepted = check_evidence(
        token,
        public_jwk(key.public_key()),
        channel_id="ch_app",
        audience="https://ecard.example.test",
        identity_number=number,
        region="330000",
        policy={"*": ["face_liveness"]},
        purpose="issuance",
        now=time.time(),
        max_age=300,
    )
    assert accepted.reference == "check-42" and accepted.method == "face_liveness"
