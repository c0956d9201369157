"""The login scopes and the claims each one releases (pure: no I/O).

Login scopes (``openid``, ``profile``, ``ecard``) are granted by the login itself.  A scope marked
``needs_consent`` is a consent scope (精准授权, :mod:`ecard.consent.scopes`): it is never asked for
in ``scope`` but in the request's ``authorization_details`` (:mod:`ecard.oidc.authorization`), and
its claims are released only while a live consent grant covers it (:mod:`ecard.oidc.userinfo`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecard.crypto.fields import keyed_digest
from ecard.crypto.identity import mask_name
from ecard.crypto.jwk import b64url
from ecard.errors import AppError


@dataclass(frozen=True)
class HolderFacts:
    """What claims are made of: looked up once per userinfo call, never cached."""

    ecard_id: str
    person_id: str
    name: str
    card_status: str
    card_region: str


@dataclass(frozen=True)
class ScopeSpec:
    zh: str
    en: str
    claims: Callable[[HolderFacts, bytes, str], dict[str, Any]]  # (facts, pseudonym key, sector)
    #: Scopes beyond the basic ones are released only through a live consent grant (精准授权).
    needs_consent: bool = False
    #: For a consent scope: its claims, made of the fields the consent data API releases for it.
    from_consent: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def pseudonym(key: bytes, purpose: str, sector: str, value: str) -> str:
    """A stable identifier for ``value`` that differs per sector and cannot be reversed."""
    return b64url(keyed_digest(key, purpose, f"{sector}|{value}"))


def _no_claims(facts: HolderFacts, key: bytes, sector: str) -> dict[str, Any]:
    return {}


#: GB/T 2261.1 sex codes as OIDC Core §5.1 ``gender`` values (9, unspecified: no claim)
_GENDER = {"1": "male", "2": "female"}


def identity_claims(fields: dict[str, Any]) -> dict[str, Any]:
    """OIDC claims of ``identity.basic``: the real name (overrides ``profile``'s masked one),
    ``gender``, ``birthdate`` (OIDC Core §5.1) and ``identity_number`` (公民身份号码)."""
    claims = {
        "name": fields["name"],
        "birthdate": fields["birth_date"],
        "identity_number": fields["identity_number"],
    }
    if fields.get("gender") in _GENDER:
        claims["gender"] = _GENDER[fields["gender"]]
    return claims


SCOPES: dict[str, ScopeSpec] = {
    "openid": ScopeSpec(
        "登录标识（每个应用不同）", "A sign-in identifier unique to this site", _no_claims
    ),
    "profile": ScopeSpec(
        "姓名（脱敏）", "Your masked name", lambda f, k, s: {"name": mask_name(f.name)}
    ),
    "ecard": ScopeSpec(
        "社保卡状态、发卡地区、电子社保卡标识（每个应用不同）",
        "Card status, issuing region and an e-card identifier unique to this site",
        lambda f, k, s: {
            "card_status": f.card_status,
            "issuer_region": f.card_region,
            "ecard_pseudonym": pseudonym(k, "oidc-ecard", s, f.ecard_id),
        },
    ),
    "identity.basic": ScopeSpec(
        "基本身份信息（实名、身份证号，需您单独授权）",
        "Your real name and identity number (only with your separate consent)",
        _no_claims,
        needs_consent=True,
        from_consent=identity_claims,
    ),
}

#: The consent scopes whose claims a login can carry, under a live grant.
CONSENTED_SCOPES: tuple[str, ...] = tuple(s for s, spec in SCOPES.items() if spec.needs_consent)


def parse_scope(raw: str | None, allowed: frozenset[str]) -> str:
    """Normalised scope string; refuses unknown scopes, consent-only scopes and unfiled ones."""
    requested = list(dict.fromkeys((raw or "").split()))
    if "openid" not in requested:
        raise AppError("invalid_scope", "scope must include openid")
    for scope in requested:
        spec = SCOPES.get(scope)
        if spec is None:
            raise AppError("invalid_scope", f"unknown scope {scope[:40]!r}")
        if spec.needs_consent:
            raise AppError("invalid_scope", f"{scope} is released only through a consent grant")
        if scope not in allowed:
            raise AppError("invalid_scope", f"this client is not filed for scope {scope}")
    return " ".join(requested)
