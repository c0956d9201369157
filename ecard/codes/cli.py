"""``ecard verify CODE_OR_IMAGE``: verify a dynamic code (or an e-license) offline, as a verifier
without a connection would: signature against the trust list, time, revocation list.

The lists come from files (as served by ``/offline/v1/…``) or from a server (``--server``); the
root key that checks them from ``--root-key`` (a JWK file: pin it) or, failing that, from the
server.  An argument naming an existing file is read as an image and its QR code decoded.
Exit status: 0 valid, 1 invalid, 2 the input or the lists could not be used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.codes.service import VALID, reason_message
from ecard.offline import (
    DEFAULT_SKEW_SECONDS,
    ElicenseResult,
    OfflineError,
    Usage,
    VerificationResult,
    load_revocation_list,
    load_trust_list,
    verify,
    verify_elicense,
)
from ecard.offline.es256 import public_key_from_jwk

LIST_PATHS = {
    "root": "/offline/v1/root-key",
    "trust": "/offline/v1/trust-list",
    "revocations": "/offline/v1/revocations",
}


class Unusable(Exception):
    """The input or a list cannot be used at all (exit 2), as opposed to an invalid code
    (exit 1)."""


def read_input(argument: str) -> str:
    """The code text: decoded from an image file, read from stdin (``-``), or the argument
    itself."""
    if argument == "-":
        return sys.stdin.read().rstrip("\r\n")
    path = Path(argument)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a code or an e-license longer than a file name can be
        is_file = False
    if not is_file:
        return argument
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = image.convert("L")
    except (OSError, UnidentifiedImageError) as exc:
        raise Unusable(f"{path}: not a readable image ({exc})") from None
    found = zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode)
    if not found:
        raise Unusable(f"{path}: no QR code found in the image")
    return found[0].text


def _fetch(server: str, which: str) -> str:
    try:
        response = httpx.get(server.rstrip("/") + LIST_PATHS[which], timeout=10)
    except httpx.HTTPError as exc:
        raise Unusable(f"cannot fetch the {which} list from {server}: {exc}") from None
    if response.status_code != 200:
        raise Unusable(f"{server}{LIST_PATHS[which]} answered {response.status_code}")
    return response.text


def _source(path: str | None, server: str | None, which: str) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Unusable(f"cannot read {path}: {exc}") from None
    if server:
        return _fetch(server, which)
    raise Unusable(
        f"give --{'revocation-list' if which == 'revocations' else which + '-list'} FILE"
        " or --server URL"
    )


def _root_key(args: argparse.Namespace) -> ec.EllipticCurvePublicKey:
    if not args.root_key and not args.server:
        raise Unusable("give --root-key FILE (the platform root JWK) or --server URL")
    try:
        text = Path(args.root_key).read_bytes() if args.root_key else _fetch(args.server, "root")
        return public_key_from_jwk(msgspec.json.decode(text))
    except OSError as exc:
        raise Unusable(f"cannot read {args.root_key}: {exc}") from None
    except (msgspec.DecodeError, OfflineError, AttributeError) as exc:
        raise Unusable(f"the root key is not a P-256 public JWK: {exc}") from None


def check(args: argparse.Namespace, now: int) -> dict:
    """The verification as a JSON-ready dict."""
    text = read_input(args.code)
    root = _root_key(args)
    try:
        trust = load_trust_list(
            _source(args.trust_list, args.server, "trust"), root, now, skew_seconds=args.skew
        )
        revocations = load_revocation_list(
            _source(args.revocation_list, args.server, "revocations"),
            root,
            now,
            skew_seconds=args.skew,
        )
    except OfflineError as exc:
        raise Unusable(f"the lists were refused: {exc}") from None
    if text.count(".") == 2 and not text.startswith("EC"):  # a compact JWS: the e-license
        found: ElicenseResult | VerificationResult = verify_elicense(
            text, trust, revocations, now, args.skew
        )
        kind = "elicense"
    else:
        found = verify(text, trust, revocations, now, args.skew, usages=(Usage(args.usage),))
        kind = "code"
    shown = msgspec.to_builtins(found.claims) if found.claims else {}
    for opaque in ("pseudonym", "key_id"):  # meaningless to a reader
        shown.pop(opaque, None)
    reason = found.reason.value if found.reason else VALID
    return {
        "valid": found.reason is None,
        "kind": kind,
        "reason": None if found.reason is None else reason,
        "message": reason_message(reason),
        "issuer": {"region": found.issuer.region, "name": found.issuer.issuer_name}
        if found.issuer
        else None,
        "claims": shown,
        "checked_at": now,
    }


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        result = check(args, int(time.time()))
    except Unusable as exc:
        print(f"ecard verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        verdict = "VALID 有效" if result["valid"] else f"INVALID 无效: {result['reason']}"
        print(f"{verdict} — {result['message']['zh-CN']} / {result['message']['en']}")
        if result["issuer"]:
            print(f"  issuer      {result['issuer']['region']} {result['issuer']['name']}")
        for name, value in result["claims"].items():
            print(f"  {name:<11} {value}")
    return 0 if result["valid"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``verify CODE_OR_IMAGE``."""
    parser = subparsers.add_parser(
        "verify",
        help=(
            "verify a code (text or QR image) or an e-license offline"
            " with the trust and revocation lists"
        ),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "code",
        metavar="CODE_OR_IMAGE",
        help="the code text, an image file with the QR, or - for stdin",
    )
    parser.add_argument(
        "--server",
        help="fetch the lists (and, unless --root-key, the root key) from this platform URL",
    )
    parser.add_argument(
        "--root-key",
        help="the platform root public key, a JWK file (as /offline/v1/root-key serves)",
    )
    parser.add_argument(
        "--trust-list", help="a signed trust list file (as /offline/v1/trust-list serves)"
    )
    parser.add_argument(
        "--revocation-list",
        help="a signed revocation list file (as /offline/v1/revocations serves)",
    )
    parser.add_argument(
        "--skew", type=int, default=DEFAULT_SKEW_SECONDS, help="clock-skew allowance in seconds"
    )
    parser.add_argument(
        "--usage",
        type=int,
        choices=[u.value for u in Usage],
        default=Usage.SHOW.value,
        help="the code usage this verifier accepts (1 show, 2 terminal, 3 login)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=cmd_verify)
