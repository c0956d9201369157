"""What a filing may be filed for, and the check of its entitlements against the catalogues in code.

Capabilities: ``channel`` (issues e-cards), ``verifier`` (which identity fields it may see when it
verifies a code), ``login`` (a relying party for scan-to-login: redirect URIs, OIDC scopes, subject
sector, in ``oidc_client``), ``data`` (a relying party asking holders for data: consent scopes and
purposes), ``department`` (identity checks) and ``terminal`` (an acceptance device of a terminal
operator: the card fields it may learn).  A name outside a catalogue is refused with
``entitlement_unknown`` (400), never kept to answer nothing later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ecard.errors import AppError

CAPABILITIES: tuple[str, ...] = ("channel", "verifier", "login", "data", "department", "terminal")

#: the older ``kind`` of a client (``/operator/v1/clients``, ``client_of(...)``) -> its capability
KIND_CAPABILITY: dict[str, str] = {
    "channel": "channel",
    "verifier": "verifier",
    "relying_party": "data",
    "department": "department",
    "terminal": "terminal",
    "login": "login",
}
CAPABILITY_KIND: dict[str, str] = {cap: kind for kind, cap in KIND_CAPABILITY.items()}


def verifier_fields() -> frozenset[str]:
    """The identity fields a verifier can be entitled to (``ecard.codes.schemas``)."""
    from ecard.codes.schemas import ENTITLED_FIELDS

    return frozenset(ENTITLED_FIELDS)


def terminal_entitlements() -> frozenset[str]:
    """A terminal's: the verifier fields and the chip's personal data."""
    from ecard.terminal.service import PERSONAL_DATA_ENTITLEMENT

    return verifier_fields() | {PERSONAL_DATA_ENTITLEMENT}


def consent_scopes() -> frozenset[str]:
    from ecard.consent.scopes import SCOPES

    return frozenset(SCOPES)


def consent_purposes() -> frozenset[str]:
    from ecard.consent.scopes import PURPOSES

    return frozenset(PURPOSES)


def oidc_scopes() -> frozenset[str]:
    from ecard.oidc.scopes import SCOPES

    return frozenset(SCOPES)


def check_names(kind: str, names: Iterable[str], catalogue: frozenset[str]) -> list[str]:
    """``names`` without repeats, in order; ``entitlement_unknown`` for the first one not in
    ``catalogue`` (named in the detail, cut to 64 characters)."""
    unique = list(dict.fromkeys(names))
    for name in unique:
        if name not in catalogue:
            raise AppError(
                "entitlement_unknown",
                f"{kind}: unknown {name[:64]!r}; known: {', '.join(sorted(catalogue))}",
            )
    return unique


def entitlements_of(capabilities: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The flat list the services read (``ClientPrincipal.entitlements``): verifier fields, consent
    scopes and terminal entitlements, in that order, without repeats."""
    names: list[str] = []
    names += capabilities.get("verifier", {}).get("fields", [])
    names += capabilities.get("data", {}).get("scopes", [])
    names += capabilities.get("terminal", {}).get("entitlements", [])
    return list(dict.fromkeys(names))


def from_kind(kind: str, entitlements: list[str]) -> dict[str, dict[str, Any]]:
    """The capabilities of a client registered the older way (one kind, one entitlement list),
    each entitlement checked against that kind's catalogue."""
    capability = KIND_CAPABILITY[kind]
    if capability == "verifier":
        return {"verifier": {"fields": check_names("verifier", entitlements, verifier_fields())}}
    if capability == "data":
        return {"data": {"scopes": check_names("data", entitlements, consent_scopes())}}
    if capability == "terminal":
        allowed = terminal_entitlements()
        return {"terminal": {"entitlements": check_names("terminal", entitlements, allowed)}}
    if entitlements:
        raise AppError("entitlement_unknown", f"a {kind} is filed without entitlements")
    return {capability: {}}


def settings_of(filed: Mapping[str, Mapping[str, Any]]) -> Any:
    """``filed`` as the request struct (``ecard.partners.schemas.Capabilities``);
    ``validation_failed`` when a setting does not fit it."""
    import msgspec

    from ecard.partners.schemas import Capabilities

    try:
        return msgspec.convert(filed, Capabilities)
    except msgspec.ValidationError as error:
        raise AppError("validation_failed", str(error)) from None
