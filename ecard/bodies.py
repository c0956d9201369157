"""Request bodies decoded safely: a JSON nesting limit checked before any decoder recurses, then
decoding straight into the handler's declared type (msgspec).

Why: a JSON decoder recurses once per nested array or object.  With a sane recursion limit a
deep body raises ``RecursionError`` (a 500); with a raised one (``py_ecc``, imported by web3, sets
100,000) it overflows the C stack and the worker dies.  No body the API accepts nests deeper than a
few levels, so anything deeper than :data:`MAX_JSON_DEPTH` is refused with ``body_too_deep``
before it is decoded.

The check is linear in the body and runs in C-speed passes (``re``, ``bytes.translate``); bodies
with few brackets (every legitimate one) skip it after two ``bytes.count`` calls.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.serialization import decode_json as litestar_decode_json
from litestar.types import Empty

from ecard.errors import AppError

#: Deepest nesting of arrays and objects a request body may have.  The deepest legitimate body
#: (a JWK inside a client registration inside a list) nests 4 levels.
MAX_JSON_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes
_STRING = re.compile(rb'"[^"]*"')  # with escapes gone, a string runs to the next quote
_OPEN_RUN = re.compile(rb"[\[{]{%d}" % (MAX_JSON_DEPTH + 1))
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_within(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether no array or object in ``body`` is nested more than ``limit`` deep.

    Contract: when this returns True, a JSON decoder reading ``body`` never nests deeper than
    ``limit``, also when ``body`` turns out not to be JSON (a decoder stops at its first error, and
    the prefix before it is tokenised here as a decoder does: escapes, then strings).  Every body
    nested at most ``limit // 2`` deep is accepted; between that and ``limit`` the answer may be
    either (each pass below removes one or two levels, so it is counted as two)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return True
    text = _STRING.sub(b"", _ESCAPE.sub(b"_", body)) if b'"' in body else body
    brackets = text.translate(None, _NOT_BRACKET)
    if _OPEN_RUN.search(brackets):  # the usual attack, refused without a pass
        return False
    for passes in range(limit // 2):
        size = len(brackets)
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")  # the innermost level (or two)
        if not brackets:
            return True
        if len(brackets) == size:  # unbalanced, so not JSON: at most 2 * passes levels were
            # removed, and every open bracket still enclosing a point of the body is left over
            return 2 * passes + brackets.count(b"[") + brackets.count(b"{") <= limit
    return False


def check_nesting(body: bytes) -> None:
    """Refuse (400 ``body_too_deep``) a body nested deeper than :data:`MAX_JSON_DEPTH`."""
    if not nesting_within(body):
        raise AppError("body_too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def check_no_nul(body: bytes) -> None:
    """Refuse (400 ``validation_failed``) a body whose text holds a NUL character (``\\u0000``):
    no field of the API may contain one, PostgreSQL cannot store one, and C code reading the
    value would see it cut short.  Raw control characters are already invalid JSON; only the
    escape needs looking for, and the (rare) body that spells it is decoded to tell a NUL from
    an escaped backslash followed by ``u0000``."""
    if b"\\u0000" not in body:
        return
    try:
        value = msgspec.json.decode(body)  # its nesting was checked first
    except msgspec.MsgspecError:
        return  # not JSON: the decoder refuses it anyway
    if _holds_nul(value):
        raise AppError("validation_failed", "text must not contain NUL (U+0000) characters")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


def decode_json(body: bytes, type: Any = Any) -> Any:
    """``body`` decoded as ``type`` after the nesting check; a body that is not JSON, or not of
    ``type``, is ``malformed_request`` / ``validation_failed`` (400) with msgspec's message."""
    check_nesting(body)
    check_no_nul(body)
    try:
        return msgspec.json.decode(body, type=type)
    except msgspec.ValidationError as exc:
        raise AppError("validation_failed", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise AppError("malformed_request", f"the body is not valid JSON: {exc}") from None


class BodySafeRequest(Request):
    """Litestar's request, whose JSON body is checked for nesting and then decoded straight into
    the handler's ``data`` type (one typed pass in C, no untyped tree first).  A body that does not
    fit the type is decoded untyped (its nesting already checked) so that Litestar's own
    validation answers it, with the same problem as before."""

    async def json(self) -> Any:
        if self._json is Empty:
            cached = self._connection_state.json
            if cached is not Empty:
                self._json = cached
            else:
                body = await self.body() or b"null"
                check_nesting(body)
                check_no_nul(body)
                self._json = self._connection_state.json = self._decode(body)
        return self._json

    def _decode(self, body: bytes) -> Any:
        field = self.route_handler.parsed_data_field
        if field is not None:
            try:
                return msgspec.json.decode(
                    body,
                    type=field.annotation,
                )
            except (msgspec.MsgspecError, TypeError):  # not of the type, or a type msgspec lacks
                pass
        return litestar_decode_json(body, type_decoders=self.route_handler.resolve_type_decoders())
