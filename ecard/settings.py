"""Typed settings from ``ECARD_*`` environment variables and an optional TOML file.

Precedence: defaults < TOML file (``ECARD_CONFIG`` or ``--config``) < environment.  A bad value
stops start-up with :class:`SettingsError`, whose message names the setting and what is wrong.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ecard.proxy import parse_trusted_proxies

PREFIX = "ECARD_"

RegionCode = Annotated[str, msgspec.Meta(pattern=r"^[1-9]\d{5}$")]
Seconds = Annotated[int, msgspec.Meta(ge=1)]


class Peer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Another province's deployment: whose codes it issues, where, its pinned root key, and this
    deployment's verifier credentials at it (for routing online verifications)."""

    regions: Annotated[list[RegionCode], msgspec.Meta(min_length=1)]
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    root_key: dict[str, str]  # the peer's root public JWK (P-256)
    client_id: str
    client_secret: str


class DirectoryPeer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Another province's directory feed (``docs/directory.md``): where it is, the root public
    key that signs it, and the provinces it is the only source for."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]  # .../directory/v1/feed
    root_key: dict[str, str]  # the peer's root public JWK (P-256)
    provinces: Annotated[list[RegionCode], msgspec.Meta(min_length=1)]


class CardPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A province's card-life policy (``docs/lifecycle.md``)."""

    #: a 临时挂失 lapses by itself after this many days (the card is active again)
    temporary_loss_days: Annotated[int, msgspec.Meta(ge=1, le=90)] = 7
    #: whether an expired physical card suspends its e-cards (``suspend``) or not (``continue``)
    expired_card: Literal["continue", "suspend"] = "continue"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of the service; all have embedded defaults so a bare machine can start."""

    env: Literal["dev", "prod"] = "dev"
    database_url: str = "sqlite:///var/ecard.db"
    redis_url: str | None = None
    redis_prefix: str = "ecard:"
    ledger_rpc_url: str | None = None
    ledger_seal_interval: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    #: the chain account that anchors (``docs/operations.md``): its secp256k1 private key, 64 hex
    #: digits, or better the path of a file holding them.  Unset: the node's unlocked account
    #: (development nodes only; production requires it).  Never logged
    ledger_anchor_key: str | None = None
    #: the LedgerAnchor contract, chain and deployment block ``ecard ledger deploy`` printed;
    #: production requires them (it never deploys on first use)
    ledger_contract: Annotated[str, msgspec.Meta(pattern=r"^0x[0-9a-fA-F]{40}$")] | None = None
    ledger_contract_block: Annotated[int, msgspec.Meta(ge=0)] = 0
    ledger_chain_id: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: anchoring fees: ``free`` (gasPrice 0, Besu ``--min-gas-price=0``), ``legacy``, ``eip1559``
    #: or ``auto`` (EIP-1559 when the chain has a base fee); a stuck transaction is replaced after
    #: ``ledger_replace_after`` seconds with higher fees, never above ``ledger_max_fee_gwei``
    ledger_gas: Literal["auto", "free", "legacy", "eip1559"] = "auto"
    ledger_max_fee_gwei: Annotated[float, msgspec.Meta(gt=0)] | None = None
    ledger_replace_after: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 120.0
    #: ``/readyz``: the chain's latest block may be this old (0: not checked, for chains that make
    #: blocks only on demand), and the oldest unanchored block this old
    ledger_max_block_age: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    ledger_max_anchor_lag: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    #: the ledger's two trust domains (``docs/ledger.md``): the log's signing key and the consent
    #: writer's key, each a hex Ed25519 seed or a key file; unset they derive from the keyring
    #: (development), production requires both, and different
    ledger_log_key: str | None = None
    ledger_writer_key: str | None = None
    keys_dir: str = "keys"
    #: where private keys live (``docs/operations.md``, "Keys in an HSM"): ``file`` (PEM in the
    #: keyring; development) or ``pkcs11`` (a hardware security module: the module's .so path, the
    #: token's label and the user PIN, never logged)
    key_provider: Literal["file", "pkcs11"] = "file"
    pkcs11_module: str | None = None
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = None
    #: the service's external URL (OIDC issuer, DPoP ``htu``, evidence audience).  Left empty it
    #: is the address actually served, ``http://{host}:{port}`` (see :func:`served_url`); always
    #: filled after construction.  ``env = "prod"`` requires it explicitly (:func:`load_settings`)
    public_url: str = ""
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    region_code: RegionCode = "330000"
    code_lifetime: Annotated[int, msgspec.Meta(ge=15, le=300)] = 60
    holder_access_ttl: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900
    holder_refresh_ttl: Annotated[int, msgspec.Meta(ge=3600, le=180 * 86_400)] = 30 * 86_400
    #: holder sessions bound to a device key (DPoP, RFC 9449; ``docs/holder-sessions.md``):
    #: ``optional`` issues unbound (Bearer) sessions when the channel sends no ``dpop_jkt``;
    #: ``required`` refuses such an issuance (``dpop_required``) — production provinces set it
    holder_dpop: Literal["optional", "required"] = "optional"
    #: how far (seconds) a DPoP proof's ``iat`` may be from the server's clock, either way
    holder_dpop_iat_window: Annotated[int, msgspec.Meta(ge=5, le=600)] = 60
    #: ask for server nonces in DPoP proofs (``use_dpop_nonce`` / ``DPoP-Nonce``); off by default
    holder_dpop_nonce: bool = False
    #: live holder sessions one e-card may have; issuing one more ends the oldest
    holder_max_sessions_per_ecard: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    operator_token_ttl: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 8 * 3600
    #: how long an ``Idempotency-Key``'s stored (encrypted) response is replayed, then purged
    idempotency_ttl: Annotated[int, msgspec.Meta(ge=60, le=30 * 86_400)] = 86_400
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 1_048_576
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    #: reverse proxies (addresses or CIDR networks, comma-separated) whose Forwarded /
    #: X-Forwarded-* headers name the real client, scheme and host (``docs/deployment.md``)
    trusted_proxies: str = ""
    #: other provinces' deployments (TOML ``[[peers]]`` tables, or ``ECARD_PEERS`` as a JSON list)
    peers: list[Peer] = []
    #: other provinces' directory feeds (TOML ``[[directory_peers]]`` tables, or
    #: ``ECARD_DIRECTORY_PEERS`` as a JSON list), pulled every ``directory_pull_seconds``
    directory_peers: list[DirectoryPeer] = []
    directory_pull_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 300.0
    #: card-life policy per province region code, ``"*"`` for the rest (TOML ``[card_policies."*"]``
    #: tables, or ``ECARD_CARD_POLICIES`` as a JSON object)
    card_policies: dict[str, CardPolicy] = {}
    #: seconds between the webhook delivery worker's looks for due deliveries (``docs/webhooks.md``)
    webhook_poll_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0
    #: accept ``http://`` webhook endpoint URLs (development and tests; otherwise https only)
    webhook_allow_http: bool = False
    #: finished webhook deliveries (delivered or given up) are purged from the log after this long
    webhook_retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    #: months each append-only log keeps, overriding the defaults of ``docs/retention.md`` (TOML
    #: ``[retention_months]`` or ``ECARD_RETENTION_MONTHS`` as JSON, e.g. ``{"audit_event": 60}``)
    retention_months: dict[str, int] = {}
    #: ``ecard db maintain`` (and its daily background run): months of partitions made ahead,
    #: days a detached partition is kept before it is dropped (0: only ``--drop-detached``), and
    #: whether the service runs it itself (off: run it from cron, ``docs/operations.md``)
    partition_months_ahead: Annotated[int, msgspec.Meta(ge=1, le=24)] = 3
    partition_drop_after_days: Annotated[int, msgspec.Meta(ge=0, le=3650)] = 30
    partition_maintenance: bool = True
    #: how old (seconds) a channel's 实人 evidence may be at issuance or password reset
    #: (``docs/front-door.md``); its ``iat`` may also be at most 60 s in the future
    liveness_max_age_seconds: Annotated[int, msgspec.Meta(ge=30, le=3600)] = 300
    #: the 实人 check methods each province accepts: region code (e.g. ``"330000"``) or ``"*"`` for
    #: the rest → method names of :data:`ecard.registry.evidence.METHODS` (TOML
    #: ``[liveness_methods]`` table, or ``ECARD_LIVENESS_METHODS`` as a JSON object)
    liveness_methods: dict[str, list[str]] = msgspec.field(
        default_factory=lambda: {"*": ["face_liveness", "face_compare_police", "counter_in_person"]}
    )
    #: usage statistics (``docs/statistics.md``): cells with fewer events or distinct cards than
    #: ``statistics_k`` are withheld (10 at least: a smaller setting is refused); a card counts at
    #: most ``statistics_contribution_cap`` events per hour towards department figures; each
    #: department may spend ``statistics_department_epsilon`` of privacy budget per month of data,
    #: at most ``statistics_max_query_epsilon`` per query; the aggregation job runs every
    #: ``statistics_aggregate_seconds`` (0: only by ``ecard statistics aggregate``)
    statistics_k: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 10
    statistics_contribution_cap: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    statistics_department_epsilon: Annotated[float, msgspec.Meta(gt=0, le=100)] = 4.0
    statistics_max_query_epsilon: Annotated[float, msgspec.Meta(gt=0, le=10)] = 1.0
    statistics_aggregate_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 300.0

    def __post_init__(self) -> None:
        if not self.public_url:  # unset: follow the address served
            msgspec.structs.force_setattr(self, "public_url", served_url(self.host, self.port))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        """``sqlite:///var/x.db`` is relative, ``sqlite:////abs/x.db`` absolute
        (SQLAlchemy style)."""
        return Path(self.database_url[len("sqlite:///") :])


#: bind addresses that name no single address a client could use
# the addresses that mean "every interface": recognised to advertise a reachable URL, not bound
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104


def served_url(host: str, port: int) -> str:
    """The URL clients reach a server bound to ``host:port`` at: ``http://{host}:{port}``, an IPv6
    host in brackets.  A wildcard bind (``0.0.0.0``, ``::``) names no single address, so it gives
    the loopback ``127.0.0.1`` (reachable on such a bind, dual-stack for ``::``); production sets
    ``ECARD_PUBLIC_URL`` instead."""
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range."""


_FIELDS = {name: name for name in Settings.__struct_fields__}


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(PREFIX) or key == f"{PREFIX}CONFIG":
            continue
        name = key[len(PREFIX) :].lower()
        if name not in _FIELDS:
            continue  # other ECARD_* variables (test knobs) are not settings
        values[name] = _json_setting(key, raw) if name in _JSON_FIELDS else raw
    return values


_JSON_FIELDS = {
    "peers",
    "card_policies",
    "liveness_methods",
    "directory_peers",
    "retention_months",
}


def _json_setting(key: str, raw: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise SettingsError(f"{key}: not valid JSON: {exc}") from None


def _setting_name(error: msgspec.ValidationError) -> str:
    match = re.search(r"\$\.(\w+)", str(error))
    return f"{PREFIX}{match.group(1).upper()}" if match else "settings"


def load_settings(
    environ: dict[str, str] | None = None, config_file: str | os.PathLike[str] | None = None
) -> Settings:
    """Build settings; raise :class:`SettingsError` naming the bad setting."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    path = config_file or environ.get(f"{PREFIX}CONFIG")
    if path:
        try:
            values.update(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise SettingsError(f"{PREFIX}CONFIG: file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{PREFIX}CONFIG: {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(values) - set(_FIELDS))
        if unknown:
            raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    values.update(_from_environment(environ))
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{_setting_name(exc)}: {exc}") from None
    _check_urls(settings)
    _check_public_url(settings, explicit=bool(values.get("public_url")))
    _check_trusted_proxies(settings)
    _check_liveness_methods(settings)
    _check_retention(settings)
    return settings


def _check_retention(settings: Settings) -> None:
    from ecard.store.partitions import PartitionPolicyError, retention_policy

    try:
        retention_policy(settings.retention_months)
    except PartitionPolicyError as exc:
        raise SettingsError(f"{PREFIX}RETENTION_MONTHS: {exc}") from None


def _check_liveness_methods(settings: Settings) -> None:
    from ecard.registry.evidence import METHODS  # the catalogue lives with the rules that use it

    for region, methods in settings.liveness_methods.items():
        if region != "*" and not re.fullmatch(r"[1-9]\d{5}", region):
            raise SettingsError(
                f'{PREFIX}LIVENESS_METHODS: {region!r} is neither a region code nor "*"'
            )
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise SettingsError(
                f"{PREFIX}LIVENESS_METHODS: {region}: unknown method(s) {', '.join(unknown)}; "
                f"known: {', '.join(METHODS)}"
            )


def _check_trusted_proxies(settings: Settings) -> None:
    try:
        parse_trusted_proxies(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}TRUSTED_PROXIES: {exc}") from None


def _check_public_url(settings: Settings, *, explicit: bool) -> None:
    if explicit:
        if not settings.public_url.startswith(("http://", "https://")):
            raise SettingsError(f"{PREFIX}PUBLIC_URL: expected an http(s):// URL")
        return
    if settings.env == "prod":
        raise SettingsError(
            f"{PREFIX}PUBLIC_URL: required when {PREFIX}ENV=prod (the OIDC issuer and the audience "
            "of tokens and evidence must be the service's external URL, e.g. "
            "https://ecard.example.cn)"
        )
    if settings.host in WILDCARD_HOSTS:
        logging.getLogger("ecard.settings").warning(
            "%sPUBLIC_URL is not set and %sHOST=%s is a wildcard bind: advertising %s (issuer, "
            "audiences); set %sPUBLIC_URL to the address clients use",
            PREFIX,
            PREFIX,
            settings.host,
            settings.public_url,
            PREFIX,
        )


def _check_urls(settings: Settings) -> None:
    if not settings.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise SettingsError(
            f"{PREFIX}DATABASE_URL: expected sqlite:///PATH or postgresql://..., got a "
            "different scheme"
        )
    if not settings.is_sqlite:
        from ecard.store.db import pool_mode

        try:
            pool_mode(settings.database_url)
        except ValueError as exc:
            raise SettingsError(f"{PREFIX}DATABASE_URL: {exc}") from None
    if settings.redis_url and not settings.redis_url.startswith(
        (
            "redis://",
            "rediss://",
            "unix://",
            "redis+sentinel://",
            "redis+cluster://",
            "rediss+cluster://",
        )
    ):
        raise SettingsError(
            f"{PREFIX}REDIS_URL: expected redis://, rediss://, unix://, redis+sentinel:// or "
            "redis+cluster:// (docs/deployment.md)"
        )
    if settings.ledger_rpc_url and not settings.ledger_rpc_url.startswith(
        ("http://", "https://", "ws://", "wss://")
    ):
        raise SettingsError(
            f"{PREFIX}LEDGER_RPC_URL: expected an http(s):// or ws(s):// JSON-RPC URL"
        )
