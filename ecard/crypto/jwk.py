"""JWK helpers; the implementation lives in the offline kit so terminals share it."""

from ecard.offline.es256 import b64url_encode as b64url
from ecard.offline.es256 import public_jwk, thumbprint

__all__ = ["b64url", "public_jwk", "thumbprint"]
