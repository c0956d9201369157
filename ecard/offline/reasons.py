"""The stable reason codes of every refusal in the code format and the offline kit.

The values are part of the public contract (verifiers log them, the HTTP layer maps them to its
error catalogue, terminals upload them): add new members, never rename or reuse one.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- the code text and its binary body -------------------------------------------------
    MALFORMED = "malformed"  # not base45, wrong length, a field out of range, trailing bytes
    WRONG_PREFIX = "wrong_prefix"  # not an ecard code at all (another scheme or garbage)
    UNSUPPORTED_VERSION = "unsupported_version"  # an ecard code of a format version we don't know
    TOO_LONG = "too_long"  # longer than any valid code can be; refused before decoding
    # --- who signed it ---------------------------------------------------------------------
    UNKNOWN_ISSUER = "unknown_issuer"  # no key of that region in the trust list
    UNKNOWN_KEY = "unknown_key"  # the region is known, the key id is not
    ISSUER_MISMATCH = "issuer_mismatch"  # the key belongs to another region than the code claims
    BAD_SIGNATURE = "bad_signature"
    KEY_WITHDRAWN = "key_withdrawn"  # compromised key: fails even for codes signed before
    KEY_NOT_VALID = "key_not_valid"  # outside the key's validity window (e.g. retired and past it)
    # --- time, use and status --------------------------------------------------------------
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_USAGE = "wrong_usage"  # e.g. a login code shown to a pharmacy terminal
    REVOKED = "revoked"  # the card is on the revocation list
    # --- signed lists and packages ---------------------------------------------------------
    WRONG_TYPE = "wrong_type"  # a validly signed document of another kind (type confusion)
    STALE_TRUST_LIST = "stale_trust_list"  # past its next_update
    STALE_REVOCATION_LIST = "stale_revocation_list"
    ROLLBACK = "rollback"  # an older version than the one already held
    DELTA_BASE_MISMATCH = "delta_base_mismatch"  # the delta starts from another version or set
    DELTA_DIGEST_MISMATCH = "delta_digest_mismatch"  # applying it does not give the signed set
    # --- offline terminal limits -----------------------------------------------------------
    OFFLINE_TOO_LONG = "offline_too_long"
    OFFLINE_LIMIT_REACHED = "offline_limit_reached"
    KIND_NOT_ACCEPTED = "kind_not_accepted"


class OfflineError(ValueError):
    """A code, list, package or document was refused; ``reason`` says why in a stable code."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
