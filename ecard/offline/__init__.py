"""The offline verifier kit: code format, trust list, revocation list, offline package, verify().

Pure (no I/O, no web framework, no database) and independent of the rest of ``ecard``, so the
same code runs on the platform, in verifier apps and on terminals.  See docs/offline-kit.md.
"""

from ecard.offline.code_format import CodeClaims, ParsedCode, Usage, parse_code
from ecard.offline.documents import DEFAULT_SKEW_SECONDS
from ecard.offline.elicense import ElicenseClaims, ElicenseResult, verify_elicense
from ecard.offline.es256 import public_jwk, short_key_id, thumbprint
from ecard.offline.package import (
    CardKind,
    LoadedPackage,
    OfflineLimits,
    OfflinePackage,
    card_reference,
    check_offline_acceptance,
    load_offline_package,
    sign_offline_package,
)
from ecard.offline.reasons import OfflineError, Reason
from ecard.offline.revocation import (
    CardId,
    RevocationDelta,
    RevocationList,
    RevocationSet,
    RevokedCard,
    apply_revocation_delta,
    build_revocation_delta,
    build_revocation_list,
    load_revocation_list,
    sign_revocation_delta,
    sign_revocation_list,
)
from ecard.offline.trust import TrustedKey, TrustList, TrustStore, load_trust_list, sign_trust_list
from ecard.offline.verify import VerificationResult, verify

__all__ = [
    "DEFAULT_SKEW_SECONDS",
    "CardId",
    "CardKind",
    "CodeClaims",
    "ElicenseClaims",
    "ElicenseResult",
    "LoadedPackage",
    "OfflineError",
    "OfflineLimits",
    "OfflinePackage",
    "ParsedCode",
    "Reason",
    "RevocationDelta",
    "RevocationList",
    "RevocationSet",
    "RevokedCard",
    "TrustList",
    "TrustStore",
    "TrustedKey",
    "Usage",
    "VerificationResult",
    "apply_revocation_delta",
    "build_revocation_delta",
    "build_revocation_list",
    "card_reference",
    "check_offline_acceptance",
    "load_offline_package",
    "load_revocation_list",
    "load_trust_list",
    "parse_code",
    "public_jwk",
    "short_key_id",
    "sign_offline_package",
    "sign_revocation_delta",
    "sign_revocation_list",
    "sign_trust_list",
    "thumbprint",
    "verify",
    "verify_elicense",
]
