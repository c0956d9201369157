"""The offline kit runs on terminals: it imports nothing else of ecard and no web, database or
network library."""

from __future__ import annotations

import ast
from pathlib import Path

import ecard.offline

ALLOWED_TOP_LEVEL = {
    "__future__",
    "base64",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "hashlib",
    "json",
    "re",
    "struct",
    "typing",
    "base45",
    "cryptography",
    "jwt",
    "msgspec",
    "ecard",
}


def test_the_offline_kit_imports_only_pure_libraries_and_itself() -> None:
    for source in Path(ecard.offline.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] in ALLOWED_TOP_LEVEL, f"{source.name} imports {name}"
                if name.startswith("ecard"):
                    assert name.startswith("ecard.offline"), f"{source.name} imports {name}"
