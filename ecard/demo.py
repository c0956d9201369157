"""Demo actors for a first look: an operator, a channel, a holder with a card and an e-card, a
relying party, a verifier, a department and a terminal.  Secrets are new on every run."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import (
    ClientPrincipal,
    OperatorPrincipal,
)
from ecard.codes.service import CodeService
from ecard.consent.service import seed_demo_data
from ecard.crypto.identity import check_digit
from ecard.crypto.passwords import hash_password
from ecard.directory.demo import seed_demo as seed_directory
from ecard.errors import AppError
from ecard.offline.es256 import b64url_encode, public_jwk
from ecard.partners.schemas import (
    Capabilities,
    CredentialCreate,
    DataSettings,
    FilingCreate,
    LoginSettings,
)
from ecard.partners.service import PartnerService
from ecard.platform import Platform
from ecard.registry import holder_password, schemas
from ecard.registry.evidence import sign_evidence
from ecard.registry.service import AccessService, RegistryService
from ecard.registry.tables import ApiClient, Card, Operator, Person
from ecard.settings import Settings
from ecard.statistics.demo import seed_demo_usage
from ecard.statistics.service import StatisticsService
from ecard.terminal.schemas import TerminalCreate
from ecard.terminal.service import TerminalService

#: Where the demo site says it lives; the demo walkthrough follows its redirects by hand.
DEMO_SITE = "https://rp.demo.ecard.test"

DEMO_HOLDER = {"name": "张小三", "gender": "1", "birth": "19900307", "serial": "123"}


def demo_identity_number(region: str) -> str:
    first17 = region[:2] + "0102" + DEMO_HOLDER["birth"] + DEMO_HOLDER["serial"]
    return first17 + check_digit(first17)


async def _client(
    platform: Platform,
    kind: str,
    name: str,
    entitlements: list[str],
    actor: str,
    jwk: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create the demo client, or give the existing one a fresh secret (and ``jwk``, when given, as
    its registered public key)."""
    row = await ApiClient.select(ApiClient.id).where(ApiClient.name == name).first()
    if row is None:
        view = await AccessService(platform).create_client(
            schemas.ClientCreate(kind=kind, name=name, entitlements=entitlements, public_jwk=jwk),
            actor,  # type: ignore[arg-type]
        )
        return {"client_id": view.id, "client_secret": view.client_secret, "name": name}
    secret = await _rotate(platform, row["id"], actor, jwk=jwk)
    return {"client_id": row["id"], "client_secret": secret, "name": name}


async def _rotate(
    platform: Platform, client_id: str, actor: str, *, jwk: dict[str, str] | None = None
) -> str | None:
    """Give an existing demo filing a fresh secret (and ``jwk`` as its key) through the
    credential rotation every operator uses, ending the previous ones at once (no overlap), and
    take it live again if it was suspended."""
    partners = PartnerService(platform)
    secret = None
    if jwk is None or not client_id.startswith("te_"):
        issued = await partners.add_credential(
            client_id,
            CredentialCreate(kind="secret", overlap_seconds=0, reason="demo run"),
            actor,
        )
        secret = issued.client_secret
    if jwk is not None:
        await partners.add_credential(
            client_id,
            CredentialCreate(kind="jwk", jwk=jwk, overlap_seconds=0, reason="demo run"),
            actor,
        )
    if (await partners.get(client_id)).status != "live":
        await partners.walk_to(
            client_id, "live", "demo run", actor, audit_action="filing.step", to="live"
        )
    return secret


def _private_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return {**public_jwk(key.public_key()), "d": b64url_encode(private)}


def _demo_password(birth: dt.date) -> str:
    """A new six-digit 电子社保卡密码 for the demo holder that no strength rule refuses."""
    while True:
        candidate = f"{secrets.randbelow(10**6):06d}"
        try:
            holder_password.check_strength(candidate, birth)
        except AppError:
            continue
        return candidate


async def _relying_party(platform: Platform, name: str, actor: str) -> dict[str, Any]:
    """The demo site as ONE filing (docs/partners.md): it logs holders in (scan-to-login) and asks
    for their data (精准授权) under the same client id and secret; filed, taken through every
    step of the filing workflow to live, or given a fresh secret when it exists."""
    row = await ApiClient.select(ApiClient.id).where(ApiClient.name == name).first()
    if row is not None:
        client_id = row["id"]
        secret = await _rotate(platform, client_id, actor)
    else:
        partners = PartnerService(platform)
        filed = await partners.file(
            FilingCreate(
                name=name,
                organisation="演示信息技术有限公司 (demo IT company)",
                capabilities=Capabilities(
                    login=LoginSettings(
                        redirect_uris=[f"{DEMO_SITE}/callback"],
                        post_logout_redirect_uris=[f"{DEMO_SITE}/"],
                        scopes=["openid", "profile", "ecard"],
                    ),
                    data=DataSettings(
                        scopes=[
                            "identity.basic",
                            "card.status",
                            "insurance.enrollment",
                            "employment.status",
                            "benefit.payments",
                        ],
                        purposes=["benefit_application", "loan_application"],
                    ),
                ),
            ),
            actor,
        )
        for step in ("assess", "security_test", "approve", "go_live"):
            await partners.take_step(filed.id, step, "demo filing", actor)
        client_id, secret = filed.id, filed.client_secret
    return {
        "client_id": client_id,
        "client_secret": secret,
        "name": name,
        "redirect_uri": f"{DEMO_SITE}/callback",
    }


async def _terminal(platform: Platform, name: str, region: str, actor: str) -> dict[str, Any]:
    """Register the demo terminal with a new ES256 key; the private key goes to the demo file
    only."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key.public_key())
    row = await ApiClient.select(ApiClient.id).where(ApiClient.name == name).first()
    if row is None:
        view = await TerminalService(platform, CodeService(platform)).register(
            TerminalCreate(
                name=name,
                institution="演示医院 (demo hospital)",
                terminal_kind="hospital",
                address="演示路1号 (1 Demo Road)",
                region=region,
                public_jwk=jwk,
                entitlements=["card_status", "masked_name"],
            ),
            actor,
        )
        terminal_id = view.id
    else:
        terminal_id = row["id"]
        await _rotate(platform, terminal_id, actor, jwk=jwk)
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return {
        "terminal_id": terminal_id,
        "name": name,
        "private_jwk": {**jwk, "d": b64url_encode(private)},
    }


async def create_demo(platform: Platform, settings: Settings) -> dict[str, Any]:
    region = settings.region_code
    password = secrets.token_urlsafe(12)
    access = AccessService(platform)
    existing = await Operator.select(Operator.id).where(Operator.username == "demo-admin").first()
    if existing:
        operator_id = existing["id"]
        await Operator.update({Operator.password_hash: hash_password(password)}).where(
            Operator.id == operator_id
        )
    else:
        operator_id = await access.create_operator("demo-admin", password, "admin")
    operator = OperatorPrincipal(operator_id, "demo-admin", "admin")

    channel_key = ec.generate_private_key(ec.SECP256R1())  # signs the channel's 实人 evidence
    channel = {
        **await _client(
            platform,
            "channel",
            "演示人社App (demo channel)",
            [],
            operator.actor,
            public_jwk(channel_key.public_key()),
        ),
        "private_jwk": _private_jwk(channel_key),
    }
    clients = {
        "channel": channel,
        "department": await _client(
            platform, "department", "演示核验部门 (demo department)", [], operator.actor
        ),
        "verifier": await _client(
            platform,
            "verifier",
            "演示医院 (demo hospital verifier)",
            ["masked_name", "card_status"],
            operator.actor,
        ),
        "relying_party": await _relying_party(
            platform, "演示网站 (demo relying party)", operator.actor
        ),
        "terminal": await _terminal(
            platform, "演示读卡终端 (demo terminal)", region, operator.actor
        ),
    }

    registry = RegistryService(platform)
    number = demo_identity_number(region)
    card_number = f"D{region[:2]}000001"  # 9 characters, as on the chip (卡号)
    person = (
        await Person.select(Person.id)
        .where(Person.id_number_index == registry._index(number))
        .first()
    )
    if person is None:
        view = await registry.create_person(
            schemas.PersonCreate(
                name=DEMO_HOLDER["name"], gender="1", identity_number=number, region=region
            ),
            operator,
        )
        person_id = view.id
    else:
        person_id = person["id"]
    if not await Card.exists().where(Card.card_number == card_number):
        today = dt.date.today()
        await registry.create_card(
            schemas.CardCreate(
                person_id=person_id,
                card_number=card_number,
                region=region,
                chip_serial="0011223344556677",
                identification_code=f"{region}D15600000001",
                issue_date=today,
                expiry_date=today.replace(year=today.year + 10),
            ),
            operator,
        )
    await seed_demo_data(platform, person_id)
    await seed_directory(platform)  # the service zone: two provinces' institutions and services
    # a month of use at the zone's places, aggregated (non-empty, non-suppressed charts), and the
    # demo department's statistics grant (docs/statistics.md)
    await seed_demo_usage(platform)
    await StatisticsService(platform).grant(
        clients["department"]["client_id"], ["hrss", "livelihood"], operator.actor
    )
    card = await Card.select(Card.id).where(Card.card_number == card_number).first()
    channel_principal = ClientPrincipal(
        channel["client_id"], "channel", channel["name"], ("*",), ()
    )
    evidence = (
        sign_evidence(  # what the channel app does after its face-liveness check of the holder
            channel_key,
            channel_id=channel["client_id"],
            audience=settings.public_url,
            identity_number=number,
            method="face_liveness",
            reference=f"demo-{secrets.token_hex(6)}",
        )
    )
    issued = await registry.issue_ecard(
        schemas.ECardIssue(
            name=DEMO_HOLDER["name"],
            identity_number=number,
            card_number=card_number,
            evidence=evidence,
        ),
        channel_principal,
    )
    holder_secret = _demo_password(dt.datetime.strptime(DEMO_HOLDER["birth"], "%Y%m%d").date())
    await holder_password.provision_password(platform, person_id, holder_secret, operator.actor)
    return {
        "base_url": settings.public_url,
        "operator": {"username": "demo-admin", "password": password, "role": "admin"},
        **clients,
        "holder": {
            "name": DEMO_HOLDER["name"],
            "identity_number": number,
            "card_number": card_number,
            "card_id": card["id"],
            "ecard_id": issued.ecard.id,
            "access_token": issued.session.access_token,
            "refresh_token": issued.session.refresh_token,
            "password": holder_secret,  # the 电子社保卡密码 (step-up when approving)
        },
    }
