"""The worked example in docs/code-format.md is a real code: another team can test against it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ecard.offline import parse_code, short_key_id, thumbprint
from ecard.offline.code_format import SIGNATURE_DOMAIN
from ecard.offline.es256 import public_key_from_jwk, verify_raw

DOC = (Path(__file__).resolve().parents[2] / "docs" / "code-format.md").read_text(encoding="utf-8")


def documented(label: str) -> str:
    return re.search(rf"^{label}: `([^`]+)`$", DOC, re.MULTILINE).group(1)  # type: ignore[union-attr]


def test_the_documented_example_parses_and_verifies_with_the_documented_key() -> None:
    jwk = json.loads(re.search(r"```json\n(.+?)\n```", DOC, re.DOTALL).group(1))  # type: ignore[union-attr]
    key = public_key_from_jwk(jwk)
    parsed = parse_code(documented("code-text"))
    assert parsed.body.hex() == documented("body-hex")
    assert parsed.signature.hex() == documented("signature-hex")
    assert (
        parsed.claims.key_id == short_key_id(thumbprint(key)) == bytes.fromhex("19b2ac979caf2f1a")
    )
    assert (parsed.claims.region, parsed.claims.masked_name, parsed.claims.serial) == (
        "330000",
        "张*三",
        4000000001,
    )
    assert verify_raw(key, parsed.signature, SIGNATURE_DOMAIN + parsed.body)
    assert SIGNATURE_DOMAIN.hex() == "65636172642f636f646500"
