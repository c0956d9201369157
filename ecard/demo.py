"""Demo actors for a first look: an operator, a channel, a holder with a card and an e-card, a
relying party, a verifier, a department and a terminal.  Secrets are new on every run."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from ecard.auth import ClientPrincipal, OperatorPrincipal
from ecard.crypto.identity import check_digit
from ecard.platform import Platform
from ecard.registry import schemas
from ecard.registry.service import AccessService, RegistryService
from ecard.registry.tables import ApiClient, Card, Operator, Person
from ecard.crypto.fields import secret_digest
from ecard.crypto.passwords import hash_password
from ecard.auth import CLIENT_SECRET_PREFIX, new_token
from ecard.settings import Settings

DEMO_HOLDER = {"name": "张小三", "gender": "1", "birth": "19900307", "serial": "123"}


def demo_identity_number(region: str) -> str:
    first17 = region[:2] + "0102" + DEMO_HOLDER["birth"] + DEMO_HOLDER["serial"]
    return first17 + check_digit(first17)


async def _client(platform: Platform, kind: str, name: str, entitlements: list[str], actor: str) -> dict[str, Any]:
    """Create the demo client, or give the existing one a fresh secret."""
    row = await ApiClient.select(ApiClient.id).where(ApiClient.name == name).first()
    if row is None:
        view = await AccessService(platform).create_client(
            schemas.ClientCreate(kind=kind, name=name, entitlements=entitlements), actor  # type: ignore[arg-type]
        )
        return {"client_id": view.id, "client_secret": view.client_secret, "name": name}
    secret = new_token(CLIENT_SECRET_PREFIX)
    await ApiClient.update({ApiClient.secret_digest: secret_digest(secret), ApiClient.status: "active"}).where(
        ApiClient.id == row["id"]
    )
    return {"client_id": row["id"], "client_secret": secret, "name": name}


async def create_demo(platform: Platform, settings: Settings) -> dict[str, Any]:
    region = settings.region_code
    password = secrets.token_urlsafe(12)
    access = AccessService(platform)
    existing = await Operator.select(Operator.id).where(Operator.username == "demo-admin").first()
    if existing:
        operator_id = existing["id"]
        await Operator.update({Operator.password_hash: hash_password(password)}).where(Operator.id == operator_id)
    else:
        operator_id = await access.create_operator("demo-admin", password, "admin")
    operator = OperatorPrincipal(operator_id, "demo-admin", "admin")

    channel = await _client(platform, "channel", "演示人社App (demo channel)", [], operator.actor)
    clients = {
        "channel": channel,
        "department": await _client(platform, "department", "演示核验部门 (demo department)", [], operator.actor),
        "verifier": await _client(
            platform, "verifier", "演示医院 (demo hospital verifier)", ["masked_name", "card_status"], operator.actor
        ),
        "relying_party": await _client(platform, "relying_party", "演示网站 (demo relying party)", [], operator.actor),
        "terminal": await _client(platform, "terminal", "演示读卡终端 (demo terminal)", [], operator.actor),
    }

    registry = RegistryService(platform)
    number = demo_identity_number(region)
    card_number = f"D{region[:2]}0000001"
    person = await Person.select(Person.id).where(Person.id_number_index == registry._index(number)).first()
    if person is None:
        view = await registry.create_person(
            schemas.PersonCreate(name=DEMO_HOLDER["name"], gender="1", identity_number=number, region=region), operator
        )
        person_id = view.id
    else:
        person_id = person["id"]
    if not await Card.exists().where(Card.card_number == card_number):
        today = dt.date.today()
        await registry.create_card(
            schemas.CardCreate(
                person_id=person_id, card_number=card_number, region=region, chip_serial="0011223344556677",
                identification_code=f"{region}D15600000001",
                issue_date=today, expiry_date=today.replace(year=today.year + 10),
            ),
            operator,
        )
    channel_principal = ClientPrincipal(channel["client_id"], "channel", channel["name"], ("*",), ())
    issued = await registry.issue_ecard(
        schemas.ECardIssue(name=DEMO_HOLDER["name"], identity_number=number, card_number=card_number),
        channel_principal,
    )
    return {
        "base_url": settings.public_url,
        "operator": {"username": "demo-admin", "password": password, "role": "admin"},
        **clients,
        "holder": {
            "name": DEMO_HOLDER["name"],
            "identity_number": number,
            "card_number": card_number,
            "ecard_id": issued.ecard.id,
            "access_token": issued.session.access_token,
            "refresh_token": issued.session.refresh_token,
        },
    }
