"""The ``pkcs11`` key provider: keys in a hardware security module, through ``python-pkcs11``.

ES256 keys (root, issuers)
    Generated in the token (``CKM_EC_KEY_PAIR_GEN``, P-256) as token objects with
    ``CKA_SENSITIVE=true``, ``CKA_EXTRACTABLE=false``, ``CKA_PRIVATE=true``, ``CKA_SIGN=true`` and
    nothing else; the attributes are read back after generation and a key the token did not make
    non-extractable is destroyed again.  A signature is ``CKM_ECDSA`` over the SHA-256 digest
    computed here (SoftHSM2 and most HSMs offer plain ``CKM_ECDSA``), returned as DER, so a
    :class:`TokenEcKey` is a drop-in :class:`~cryptography...ec.EllipticCurvePrivateKey`.
    RFC 6979 deterministic signatures are not a PKCS#11 mechanism: a token key refuses
    ``deterministic_signing`` with ``UnsupportedAlgorithm`` and
    :func:`ecard.offline.es256.sign_jws` falls back to randomised ECDSA (see there).

Card master keys (the PSAM role)
    Two secret keys per region, labelled ``ecard-card-master:{region}:internal|external``, usable
    only for derivation (``CKA_DERIVE=true``, ``CKA_ENCRYPT=false``, non-extractable).  A card's key
    is derived in the token as a session object with ``CKM_*_ECB_ENCRYPT_DATA`` over the card
    identification code (the same diversification as :func:`ecard.terminal.psam.derive_card_key`),
    the cryptogram is ``CKM_*_CBC`` with a zero IV over the padded challenge (its last block is the
    CBC-MAC), and the session object is destroyed.  SoftHSM2 has no SM4, so this runs with AES-128
    (:data:`AES_CARD_MECHANISMS`); a token with SM4 plugs in its own :class:`CardMechanisms`
    (``docs/terminal-card-model.md``).

Sessions
    One session per process, opened on first use (so after a fork), logged in with the PIN, and
    every call into the module is serialised under one lock per module: ``C_Initialize`` is called
    without locking callbacks, which PKCS#11 allows only for single-threaded use.  When the
    session or the token fails (closed, removed, logged out) the call is retried once on a fresh
    session; after that it raises :class:`KeyProviderUnavailable`.  The PIN is never logged,
    never part of an error message, and not in ``repr()``.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import pkcs11
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from ecard.crypto.jwk import public_jwk, thumbprint
from ecard.crypto.keyring import KeyRecord, Keyring, KeyRole, TokenObject
from ecard.crypto.provider import KeyProvider, KeyProviderError, KeyProviderUnavailable
from ecard.terminal import psam

log = logging.getLogger("ecard.keys")

T = TypeVar("T")
KEY_ID_BYTES = 16
_SCALAR_BYTES = 32

#: failures after which a fresh session (and, for a lost module state, a fresh C_Initialize) may
#: succeed: retried once, then "unavailable"
_RECOVERABLE: tuple[type[Exception], ...] = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.GeneralError,
    p11.FunctionFailed,
    p11.DeviceMemory,
)
_PIN_REFUSED: tuple[type[Exception], ...] = (
    p11.PinIncorrect,
    p11.PinInvalid,
    p11.PinLenRange,
    p11.PinExpired,
    p11.PinLocked,
    p11.UserPinNotInitialized,
)

_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def _module_lock(module: str) -> threading.RLock:
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(os.path.realpath(module), threading.RLock())


class Token:
    """One token of one PKCS#11 module: a logged-in session, opened lazily, reopened after failure.

    :meth:`run` is the only way in: it holds the module's lock for the whole operation, so objects
    handed to ``operation`` must not escape it."""

    def __init__(self, module: str, label: str, pin: str) -> None:
        self.module = module
        self.label = label
        self._pin = pin
        self._lock = _module_lock(module)
        self._session: pkcs11.Session | None = None
        self._pid = 0
        self._objects: dict[tuple[Any, ...], Any] = {}  # handles found in the current session

    def __repr__(self) -> str:  # the PIN stays out of logs and tracebacks
        return f"Token(module={self.module!r}, label={self.label!r})"

    def run(self, operation: Callable[[pkcs11.Session], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                session = self._open()
                try:
                    return operation(session)
                except _RECOVERABLE as exc:
                    log.warning(
                        "pkcs11 session failed; reopening",
                        extra={"token": self.label, "error": type(exc).__name__},
                    )
                    self._drop()
                    if attempt == 2:
                        self._unavailable(f"the token failed ({type(exc).__name__})")
                except p11.PKCS11Error as exc:  # refused: never a bare library error upwards
                    raise KeyProviderError(
                        f"PKCS#11 token {self.label!r} refused the operation ({type(exc).__name__})"
                    ) from exc
            raise AssertionError("unreachable")  # pragma: no cover

    def cached(self, key: tuple[Any, ...], find: Callable[[], T]) -> T:
        """An object handle looked up once per session (call inside :meth:`run`)."""
        if key not in self._objects:
            self._objects[key] = find()
        found: T = self._objects[key]
        return found

    def forget(self, key: tuple[Any, ...]) -> None:
        self._objects.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _unavailable(self, reason: str) -> NoReturn:
        raise KeyProviderUnavailable(
            f"PKCS#11 token {self.label!r} ({self.module}) is unavailable: {reason}"
        )

    def _open(self) -> pkcs11.Session:
        if self._session is not None and self._pid == os.getpid():
            return self._session
        forked = self._pid not in (0, os.getpid())
        self._session, self._objects = None, {}
        try:
            lib = pkcs11.lib(self.module)
            if forked:  # a child process must initialise the module again (PKCS#11 §6.6.1)
                lib.reinitialize()
        except (p11.PKCS11Error, OSError) as exc:
            self._unavailable(f"cannot load the module ({type(exc).__name__})")
        try:
            token = lib.get_token(token_label=self.label)
        except p11.NoSuchToken:
            self._unavailable("no token with this label")
        except p11.MultipleTokensReturned:
            self._unavailable("several tokens have this label")
        except p11.PKCS11Error as exc:
            self._unavailable(f"the token cannot be listed ({type(exc).__name__})")
        try:
            session = token.open(rw=True, user_pin=self._pin)
        except _PIN_REFUSED:
            self._unavailable("the token refused ECARD_PKCS11_PIN")
        except p11.UserAlreadyLoggedIn:
            # PKCS#11 login state belongs to the process and token, not the session: another
            # session of this process logged in already (its PIN was checked then)
            session = token.open(rw=True)
        except p11.PKCS11Error as exc:
            self._unavailable(f"cannot open a session ({type(exc).__name__})")
        self._session, self._pid = session, os.getpid()
        return session

    def _drop(self) -> None:
        session, self._session, self._objects = self._session, None, {}
        if session is not None and self._pid == os.getpid():
            try:
                session.close()
            except p11.PKCS11Error:
                pass  # the session is already gone with the token


# --- ES256 keys -------------------------------------------------------------------------------


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """A P-256 private key that lives in the token: ``sign()`` runs there, nothing exports it."""

    def __init__(self, token: Token, obj: TokenObject, public: ec.EllipticCurvePublicKey) -> None:
        self._token = token
        self._object = obj
        self._id = bytes.fromhex(obj.id)
        self._public = public

    def __repr__(self) -> str:
        return f"TokenEcKey(label={self._object.label!r}, token={self._token.label!r})"

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        return 256

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("a token key signs ECDSA only")
        if signature_algorithm.deterministic_signing:
            raise UnsupportedAlgorithm("RFC 6979 deterministic ECDSA is not a PKCS#11 mechanism")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            digest = bytes(data)
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()

        def sign(session: pkcs11.Session) -> bytes:
            handle = ("private", self._id)
            key = self._token.cached(handle, lambda: self._find(session))
            try:
                raw: bytes = key.sign(digest, mechanism=Mechanism.ECDSA)
            except (p11.ObjectHandleInvalid, p11.KeyHandleInvalid):
                # the object was destroyed or re-created under the cached handle: look it up again
                self._token.forget(handle)
                raw = self._token.cached(handle, lambda: self._find(session)).sign(
                    digest, mechanism=Mechanism.ECDSA
                )
            return raw

        raw = self._token.run(sign)
        r = int.from_bytes(raw[:_SCALAR_BYTES], "big")
        s = int.from_bytes(raw[_SCALAR_BYTES:], "big")
        return encode_dss_signature(r, s)

    def _find(self, session: pkcs11.Session) -> Any:
        try:
            return session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=self._id)
        except p11.NoSuchKey:
            raise KeyProviderUnavailable(
                f"key {self._object.label!r} is not in PKCS#11 token {self._token.label!r}"
            ) from None

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise UnsupportedAlgorithm("issuer and root keys only sign")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise KeyProviderError("a key in an HSM cannot be exported")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise KeyProviderError("a key in an HSM cannot be exported")

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenEcKey:
        return self


# --- the PSAM role ----------------------------------------------------------------------------


def _value(key: Any) -> bytes:
    value: bytes = key[Attribute.VALUE]
    return value


@dataclass(frozen=True)
class CardMechanisms:
    """How a token computes the card-key protocol: the master keys' type and length, the
    diversification (an ``*_ECB_ENCRYPT_DATA`` derivation over the 16-byte card identification
    code) and the block cipher in CBC mode (zero IV; the last block is the CBC-MAC)."""

    cipher: psam.Cipher128
    key_type: KeyType
    derive: Mechanism
    cbc: Mechanism


#: what SoftHSM2 (and every PKCS#11 v2.40 token) offers.  A GM/T token with SM4 supplies its
#: vendor's key type and mechanisms with ``cipher="SM4"`` instead.
AES_CARD_MECHANISMS = CardMechanisms(
    cipher="AES",
    key_type=KeyType.AES,
    derive=Mechanism.AES_ECB_ENCRYPT_DATA,
    cbc=Mechanism.AES_CBC,
)
_PURPOSES: tuple[psam.Purpose, ...] = ("internal", "external")


def card_master_label(region: str, purpose: psam.Purpose) -> str:
    return f"ecard-card-master:{region}:{purpose}"


class TokenCardKeys:
    """:class:`ecard.terminal.psam.CardKeyRole` with the master keys in the token."""

    def __init__(self, token: Token, mechanisms: CardMechanisms = AES_CARD_MECHANISMS) -> None:
        self._token = token
        self._mechanisms = mechanisms
        self.cipher: psam.Cipher128 = mechanisms.cipher

    def card_keys(self, region: str, card_identification_code: str) -> psam.CardKeys:
        """Personalisation: the card keys leave the token (a card has to hold them); the master
        keys never do.  A production personalisation bureau wraps them under its transport key."""
        data = psam.card_id_bytes(card_identification_code)
        internal, external = self._token.run(
            lambda session: tuple(
                self._derived(session, region, purpose, data, _value, export=True)
                for purpose in _PURPOSES
            )
        )
        return psam.CardKeys(internal_auth=internal, external_auth=external, cipher=self.cipher)

    def verify_internal_authenticate(
        self, region: str, card_identification_code: str, challenge: bytes, answer: bytes
    ) -> bool:
        expected = self._cryptogram(region, "internal", card_identification_code, challenge)
        return hmac.compare_digest(expected, answer)

    def external_authenticate_cryptogram(
        self, region: str, card_identification_code: str, card_challenge: bytes
    ) -> bytes:
        return self._cryptogram(region, "external", card_identification_code, card_challenge)

    def ensure_masters(self, region: str) -> bool:
        def ensure(session: pkcs11.Session) -> bool:
            made = False
            for purpose in _PURPOSES:
                label = card_master_label(region, purpose)
                if list(session.get_objects({Attribute.LABEL: label})):
                    continue
                session.generate_key(
                    self._mechanisms.key_type,
                    psam.SM4_KEY_BYTES * 8,
                    label=label,
                    store=True,
                    template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.DERIVE: True,
                        Attribute.ENCRYPT: False,
                        Attribute.DECRYPT: False,
                        Attribute.WRAP: False,
                        Attribute.UNWRAP: False,
                        Attribute.SIGN: False,
                        Attribute.VERIFY: False,
                    },
                )
                made = True
            return made

        return self._token.run(ensure)

    def _cryptogram(
        self, region: str, purpose: psam.Purpose, card_identification_code: str, challenge: bytes
    ) -> bytes:
        data = psam.card_id_bytes(card_identification_code)
        padded = psam.pad_challenge(challenge)

        def mac(key: Any) -> bytes:
            out: bytes = key.encrypt(
                padded, mechanism=self._mechanisms.cbc, mechanism_param=bytes(16)
            )
            return out[-psam.SM4_BLOCK_BYTES :]

        return self._token.run(
            lambda session: self._derived(session, region, purpose, data, mac, export=False)
        )

    def _derived(
        self,
        session: pkcs11.Session,
        region: str,
        purpose: psam.Purpose,
        data: bytes,
        use: Callable[[Any], bytes],
        *,
        export: bool,
    ) -> bytes:
        """Derive the card key as a session object, ``use`` it, destroy it.  Only
        personalisation (``export``) makes it readable."""
        label = card_master_label(region, purpose)

        def find() -> Any:
            try:
                return session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
            except p11.NoSuchKey:
                raise KeyProviderUnavailable(
                    f"card master key {label!r} is not in PKCS#11 token {self._token.label!r}"
                ) from None

        master = self._token.cached(("master", label), find)
        card_key = master.derive_key(
            self._mechanisms.key_type,
            psam.SM4_KEY_BYTES * 8,
            mechanism=self._mechanisms.derive,
            mechanism_param=data,
            template={
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: not export,
                Attribute.EXTRACTABLE: export,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: False,
                Attribute.DERIVE: False,
            },
        )
        try:
            return use(card_key)
        finally:
            card_key.destroy()


# --- the provider -----------------------------------------------------------------------------


class Pkcs11KeyProvider(KeyProvider):
    name = "pkcs11"
    blocking = True

    def __init__(self, *, module: str, token_label: str, pin: str) -> None:
        self.token = Token(module, token_label, pin)
        self._keys: dict[str, TokenEcKey] = {}
        self._keys_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pkcs11KeyProvider({self.token!r})"

    def generate(self, role: KeyRole, region: str | None, now: int) -> KeyRecord:
        key_id = os.urandom(KEY_ID_BYTES)
        label = f"ecard-{role}-{region or 'platform'}-{key_id.hex()[:12]}"

        def make(session: pkcs11.Session) -> bytes:
            parameters = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            public, private = parameters.generate_keypair(
                store=True,
                id=key_id,
                label=label,
                public_template={Attribute.TOKEN: True, Attribute.VERIFY: True},
                private_template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.DERIVE: False,
                    Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False,
                },
            )
            if private[Attribute.EXTRACTABLE] or not private[Attribute.SENSITIVE]:
                private.destroy()
                public.destroy()
                raise KeyProviderError(
                    f"token {self.token.label!r} made an extractable key; refusing to use it"
                )
            der: bytes = encode_ec_public_key(public)
            return der

        public_key = serialization.load_der_public_key(self.token.run(make))
        if not isinstance(public_key, ec.EllipticCurvePublicKey):  # pragma: no cover
            raise KeyProviderError("the token returned a public key that is not P-256")
        log.info("key generated in pkcs11 token", extra={"role": role, "region": region})
        return KeyRecord(
            kid=thumbprint(public_key),
            role=role,
            region=region,
            status="active",
            created_at=now,
            public=public_jwk(public_key),
            token_object=TokenObject(label=label, id=key_id.hex()),
        )

    def private_key(self, record: KeyRecord) -> ec.EllipticCurvePrivateKey:
        key = self._keys.get(record.kid)
        if key is not None:
            return key
        if record.token_object is None:
            raise KeyProviderError(
                f"key {record.kid} is a file key (PEM in the keyring), not in the token; a "
                "keyring made with ECARD_KEY_PROVIDER=file cannot be used with pkcs11"
            )
        with self._keys_lock:
            key = self._keys[record.kid] = TokenEcKey(
                self.token, record.token_object, record.public_key()
            )
        return key

    def destroy(self, record: KeyRecord) -> bool:
        if record.token_object is None:
            return False
        key_id = bytes.fromhex(record.token_object.id)

        def destroy(session: pkcs11.Session) -> bool:
            found = False
            for obj in list(session.get_objects({Attribute.ID: key_id})):
                found = found or obj[Attribute.CLASS] == ObjectClass.PRIVATE_KEY
                obj.destroy()
            self.token.forget(("private", key_id))
            return found

        destroyed = self.token.run(destroy)
        self._keys.pop(record.kid, None)
        if destroyed:
            log.info("private key destroyed in pkcs11 token", extra={"kid": record.kid})
        return destroyed

    def card_keys(self, ring: Callable[[], Keyring]) -> TokenCardKeys:
        return TokenCardKeys(self.token)

    def ensure_card_masters(self, region: str) -> bool:
        return TokenCardKeys(self.token).ensure_masters(region)

    def check(self) -> None:
        self.token.run(lambda session: session.token.label)

    def close(self) -> None:
        self.token.close()
