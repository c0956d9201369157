"""HTTP surface of consent (精准授权) and of the ledger, grouped by audience: relying parties,
holders (in their channel app), and anyone holding a receipt or auditing the log.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response

from ecard.auth import ClientPrincipal, HolderPrincipal, OperatorPrincipal, require_permission
from ecard.consent import schemas
from ecard.consent.ledger_bridge import check_one_receipt, consent_ledger, verify_ledger
from ecard.consent.service import ConsentService, catalogue
from ecard.dependencies import client_of, operator_with, provide_holder
from ecard.idempotency import idempotent
from ecard.platform import Platform
from ledger.records import raw_public_key
from ledger.verify import ReceiptCheck

IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)]
#: ``?scope=a&scope=b`` narrows a read to some granted scopes (all of them when absent)
ScopeQuery = Annotated[list[str] | None, QueryParameter(name="scope", required=False, max_items=16)]


class RelyingPartyConsentController(Controller):
    path = "/consent/v1"
    tags = ["consent"]
    dependencies = {"party": client_of("relying_party")}

    @get("/scopes", summary="The data scopes and purpose codes a request may name")
    async def scopes(self) -> schemas.Catalogue:
        return catalogue()

    @post("/requests", summary="Ask a holder for named data, for a purpose and a time")
    async def create_request(
        self,
        data: JSONBody[schemas.RequestCreate],
        request: Request,
        platform: NamedDependency[Platform],
        party: NamedDependency[ClientPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response:
        return await idempotent(
            platform,
            party.actor,
            idempotency_key,
            await request.body(),
            lambda: ConsentService(platform).create_request(party, data),
        )

    @get("/requests/{consent_id:str}", summary="The request and, once answered, its grant")
    async def get_request(
        self,
        consent_id: FromPath[str],
        platform: NamedDependency[Platform],
        party: NamedDependency[ClientPrincipal],
    ) -> schemas.ConsentView:
        return await ConsentService(platform).request_for_party(party, consent_id)

    @get(
        "/grants/{grant_id:str}/data",
        summary="Read the fields a live grant covers (recorded on the ledger)",
    )
    async def data(
        self,
        grant_id: FromPath[str],
        platform: NamedDependency[Platform],
        party: NamedDependency[ClientPrincipal],
        scopes: ScopeQuery = None,
    ) -> schemas.DataView:
        return await ConsentService(platform).access(party, grant_id, scopes)

    @get(
        "/accesses/{access_id:str}/proof",
        summary="Ledger proof that the grant was live at this access",
    )
    async def access_proof(
        self,
        access_id: FromPath[str],
        platform: NamedDependency[Platform],
        party: NamedDependency[ClientPrincipal],
    ) -> schemas.AccessProof:
        return await ConsentService(platform).access_proof(party, access_id)


class HolderConsentController(Controller):
    path = "/holder/v1/consent"
    tags = ["holder", "consent"]
    dependencies = {"holder": Provide(provide_holder)}

    @get("/requests", summary="Requests waiting for the holder's answer")
    async def pending(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> list[schemas.ConsentView]:
        return await ConsentService(platform).pending_for_holder(holder)

    @post(
        "/requests/{consent_id:str}/approve",
        status_code=200,
        summary="Approve all or some requested scopes",
    )
    async def approve(
        self,
        consent_id: FromPath[str],
        data: JSONBody[schemas.Approval],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.ConsentView:
        return await ConsentService(platform).approve(holder, consent_id, data)

    @post("/requests/{consent_id:str}/deny", status_code=200)
    async def deny(
        self,
        consent_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.ConsentView:
        return await ConsentService(platform).deny(holder, consent_id)

    @get(
        "/grants",
        summary="The holder's grants (active, expired, revoked, denied) with their accesses",
    )
    async def grants(
        self,
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
        status: FromQuery[schemas.ConsentStatus | None] = None,
    ) -> list[schemas.ConsentView]:
        return await ConsentService(platform).holder_grants(holder, status)

    @get("/grants/{consent_id:str}")
    async def grant(
        self,
        consent_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.ConsentView:
        return await ConsentService(platform).holder_grant(holder, consent_id)

    @post(
        "/grants/{consent_id:str}/revoke",
        status_code=200,
        summary="Revoke; effective on the next request",
    )
    async def revoke(
        self,
        consent_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.ConsentView:
        return await ConsentService(platform).revoke(holder, consent_id)

    @get("/grants/{consent_id:str}/receipts", summary="Ledger receipts of every event of the grant")
    async def receipts(
        self,
        consent_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.GrantReceipts:
        return await ConsentService(platform).receipts(holder, consent_id)


class LedgerController(Controller):
    path = "/ledger/v1"
    tags = ["ledger"]

    @get(
        "/keys",
        summary="The log's public key and the writers' keys (to check receipts and proofs offline)",
    )
    async def keys(self, platform: NamedDependency[Platform]) -> schemas.LedgerKeys:
        ledger = await consent_ledger(platform)
        writers = [
            schemas.WriterView(w.id, w.key_id, w.public_key, w.status)
            for w in await ledger.writers()
        ]
        return schemas.LedgerKeys(ledger.key_id, raw_public_key(ledger.public_key), writers)

    @post(
        "/receipts/check",
        status_code=200,
        summary="Is this receipt genuine, and is its entry sealed where promised?",
    )
    async def check_receipt(
        self, data: JSONBody[schemas.ReceiptIn], platform: NamedDependency[Platform]
    ) -> ReceiptCheck:
        return await check_one_receipt(platform, data.receipt())

    @get(
        "/audit",
        dependencies=operator_with("audit:read"),
        summary="Audit the whole log and its anchors",
    )
    async def audit(
        self, platform: NamedDependency[Platform], operator: NamedDependency[OperatorPrincipal]
    ) -> schemas.LedgerVerification:
        require_permission(operator, "audit:read")
        return await verify_ledger(platform)


CONTROLLERS = [RelyingPartyConsentController, HolderConsentController, LedgerController]

__all__ = ["CONTROLLERS"]
