"""The application catalogue's logic: file a partner system, take it through the workflow
(:mod:`ecard.partners.workflow`), list and search filings, and rotate its credentials with an
overlap.  Every change is one transaction with its ``filing_step`` or audit row."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from piccolo.columns.combination import WhereRaw

from ecard.errors import AppError
from ecard.partners import capabilities as caps
from ecard.partners import credentials, schemas, workflow
from ecard.partners.tables import FilingStep, PartnerCredential
from ecard.platform import Platform
from ecard.registry.audit import audit
from ecard.registry.tables import ApiClient
from ecard.store.db import is_unique_violation

#: how long a rotated-out credential keeps working when the request names no overlap
DEFAULT_OVERLAP_SECONDS = 7 * 86400
#: the longest overlap a rotation may ask for
MAX_OVERLAP_SECONDS = 30 * 86400
#: secret prefixes, a hint for secret scanners: relying parties for login keep the older ``ecrp_``
LOGIN_SECRET_PREFIX = "ecrp_"  # noqa: S105 - a prefix, not a secret


def _json(value: Any) -> Any:
    return credentials.json_value(value)


def _rfc3339(value: Any) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return str(value.astimezone(dt.UTC).isoformat()).replace("+00:00", "Z")
    return str(value)


def _credential_view(row: dict[str, Any], now: float) -> schemas.CredentialView:
    ended = row["ended_at"] is not None or (
        row["not_after"] is not None and row["not_after"] <= now
    )
    state = "ended" if ended else ("overlap" if row["not_after"] is not None else "current")
    return schemas.CredentialView(
        id=row["id"],
        kind=row["kind"],
        state=state,  # type: ignore[arg-type]
        created_at=row["created_at"],
        kid=row["kid"],
        public_jwk=_json(row["public_jwk"]) if row["public_jwk"] else None,
        not_after=row["not_after"],
        ended_at=row["ended_at"],
    )


def check_capabilities(data: schemas.Capabilities) -> dict[str, dict[str, Any]]:
    """Every entitlement against its catalogue (``entitlement_unknown``); the stored settings
    (login's go to ``oidc_client`` and are kept here empty)."""
    filed: dict[str, dict[str, Any]] = {}
    if data.channel is not None:
        filed["channel"] = {}
    if data.verifier is not None:
        fields = caps.check_names("verifier", data.verifier.fields, caps.verifier_fields())
        filed["verifier"] = {"fields": fields}
    if data.login is not None:
        caps.check_names("login", data.login.scopes, caps.oidc_scopes())
        filed["login"] = {}
    if data.data is not None:
        filed["data"] = {
            "scopes": caps.check_names("data", data.data.scopes, caps.consent_scopes()),
            "purposes": caps.check_names("purpose", data.data.purposes, caps.consent_purposes()),
        }
    if data.department is not None:
        filed["department"] = {}
    if data.terminal is not None:
        entitlements = caps.check_names(
            "terminal", data.terminal.entitlements, caps.terminal_entitlements()
        )
        filed["terminal"] = {"entitlements": entitlements}
    if not filed:
        raise AppError("validation_failed", "a filing names at least one capability")
    return {name: filed[name] for name in caps.CAPABILITIES if name in filed}


@dataclass
class PartnerService:
    platform: Platform

    # --- reading -----------------------------------------------------------------------------

    async def _row(self, application_id: str) -> dict[str, Any]:
        row = await ApiClient.select().where(ApiClient.id == application_id).first()
        if row is None:
            raise AppError("application_not_found")
        return row

    async def _view(self, row: dict[str, Any], secret: str | None = None) -> schemas.FilingView:
        filed = dict(_json(row["capabilities"]) or {})
        if "login" in filed:
            from ecard.partners.login import login_settings

            filed["login"] = await login_settings(row["id"])
        return schemas.FilingView(
            id=row["id"],
            name=row["name"],
            organisation=row["organisation"],
            status=row["status"],
            capabilities=filed,
            regions=list(_json(row["regions"]) or []),
            entitlements=list(_json(row["entitlements"]) or []),
            allowed_steps=[str(s) for s in workflow.allowed_steps(row["status"])],
            created_at=_rfc3339(row["created_at"]),
            updated_at=_rfc3339(row["updated_at"]),
            client_secret=secret,
        )

    async def get(self, application_id: str) -> schemas.FilingView:
        return await self._view(await self._row(application_id))

    async def search(
        self,
        *,
        status: str | None = None,
        capability: str | None = None,
        q: str | None = None,
        cursor: str | None = None,
        page: int | None = None,
        limit: int = 50,
    ) -> schemas.FilingPage:
        """Filings by id order, filtered by status, capability and a text found in the name or the
        organisation (case-insensitive); paged by ``cursor`` (the previous page's last id, stable
        while filings are added) or by ``page`` (1-based)."""
        conditions: list[Any] = []
        if status:
            conditions.append(ApiClient.status == status)
        if capability:
            # keys of the capabilities object, as json.dumps wrote it
            conditions.append(WhereRaw("CAST(capabilities AS TEXT) LIKE {}", f'%"{capability}":%'))
        if q:
            needle = "%" + q.replace("\\", "").replace("%", "").replace("_", "") + "%"
            op = "like" if self.platform.settings.is_sqlite else "ilike"
            conditions.append(
                getattr(ApiClient.name, op)(needle) | getattr(ApiClient.organisation, op)(needle)
            )
        query, count = ApiClient.select(), ApiClient.count()
        for condition in conditions:
            query, count = query.where(condition), count.where(condition)
        if cursor is not None:
            query = query.where(ApiClient.id > cursor)
        elif page is not None:
            query = query.offset((page - 1) * limit)
        rows = await query.order_by(ApiClient.id).limit(limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        items = [await self._view(row) for row in rows]
        return schemas.FilingPage(
            items=items,
            total=await count,
            limit=limit,
            next_cursor=rows[-1]["id"] if more else None,
            page=page if cursor is None else None,
        )

    async def history(self, application_id: str) -> list[schemas.StepView]:
        await self._row(application_id)
        rows = await (
            FilingStep.select()
            .where(FilingStep.application == application_id)
            .order_by(FilingStep.id)
        )
        return [
            schemas.StepView(
                step=r["step"],
                from_status=r["from_status"],
                to_status=r["to_status"],
                actor=r["actor"],
                reason=r["reason"],
                at=_rfc3339(r["at"]),
            )
            for r in rows
        ]

    # --- filing ------------------------------------------------------------------------------

    async def file(
        self,
        data: schemas.FilingCreate,
        actor: str,
        *,
        audit_action: str = "filing.submit",
        kind: str | None = None,
    ) -> schemas.FilingView:
        """File a partner system; it starts ``submitted``.  A secret is issued (and shown once)
        unless the login capability names ``none`` or ``private_key_jwt``; ``jwk`` becomes its
        first public key.  ``kind`` is the older kind a client registered the older way has."""
        filed = check_capabilities(data.capabilities)
        login = data.capabilities.login
        sector = None
        if login is not None:
            from ecard.partners.login import check_login

            sector = check_login(data.name, login, data.jwk)
        try:
            jwk = credentials.checked_public_jwk(data.jwk) if data.jwk else None
        except ValueError as exc:
            raise AppError("validation_failed", f"jwk: {exc}") from None
        first = next(iter(filed))
        kind = kind or caps.CAPABILITY_KIND[first]
        prefix = "rp" if first == "login" else kind[:2]
        application_id = f"{prefix}_{secrets.token_hex(12)}"
        issue_secret = login is None or login.token_endpoint_auth_method not in (
            "none",
            "private_key_jwt",
        )
        secret = (
            (LOGIN_SECRET_PREFIX + secrets.token_urlsafe(32))
            if issue_secret and first == "login"
            else (credentials.new_secret() if issue_secret else None)
        )
        now = int(time.time())
        try:
            async with self.platform.engine.transaction():
                await ApiClient.insert(
                    ApiClient(
                        id=application_id,
                        kind=kind,
                        name=data.name.strip(),
                        status=workflow.FilingStatus.SUBMITTED.value,
                        regions=json.dumps(list(dict.fromkeys(data.regions))),
                        entitlements=json.dumps(caps.entitlements_of(filed)),
                        capabilities=json.dumps(filed),
                        organisation=data.organisation.strip(),
                    )
                ).run()
                if login is not None and sector is not None:
                    from ecard.partners.login import insert_login

                    await insert_login(application_id, data.name.strip(), login, sector, actor)
                if secret is not None:
                    await self._insert_credential(
                        application_id, "secret", actor, now, secret=secret
                    )
                if jwk is not None:
                    await self._insert_credential(application_id, "jwk", actor, now, jwk=jwk)
                await FilingStep.insert(
                    FilingStep(
                        application=application_id,
                        step="submit",
                        from_status=None,
                        to_status=workflow.FilingStatus.SUBMITTED.value,
                        actor=actor,
                        reason="",
                        detail=json.dumps({"capabilities": list(filed)}),
                    )
                ).run()
                await audit(actor, audit_action, "client", application_id, capabilities=list(filed))
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("application_exists") from None
            raise
        credentials.forget(application_id)
        return await self._view(await self._row(application_id), secret)

    # --- the workflow --------------------------------------------------------------------------

    async def _take(
        self, application_id: str, step: str, reason: str, actor: str
    ) -> tuple[str, str]:
        """Take one step (inside the caller's transaction); (from, to)."""
        row = await self._row(application_id)
        current = row["status"]
        try:
            target = workflow.next_status(current, step)
        except workflow.StepRefused as refused:
            raise AppError(
                "client_status_conflict",
                f"{refused}; allowed: {', '.join(workflow.allowed_steps(current)) or 'none'}",
            ) from None
        updated = (
            await ApiClient.update(
                {ApiClient.status: target.value, ApiClient.updated_at: dt.datetime.now(dt.UTC)}
            )
            .where((ApiClient.id == application_id) & (ApiClient.status == current))
            .returning(ApiClient.id)
        )
        if not updated:
            raise AppError(
                "client_status_conflict", "the status changed concurrently; reload and retry"
            )
        await FilingStep.insert(
            FilingStep(
                application=application_id,
                step=step,
                from_status=current,
                to_status=target.value,
                actor=actor,
                reason=reason,
            )
        ).run()
        return current, target.value

    async def take_step(
        self, application_id: str, step: str, reason: str, actor: str
    ) -> schemas.FilingView:
        """One workflow step, recorded (``filing_step``) and audited (``filing.step``)."""
        async with self.platform.engine.transaction():
            _, after = await self._take(application_id, step, reason, actor)
            await audit(actor, "filing.step", "client", application_id, reason, step=step, to=after)
        credentials.forget(application_id)
        return await self.get(application_id)

    async def walk_to(
        self,
        application_id: str,
        target: str,
        reason: str,
        actor: str,
        *,
        audit_action: str,
        **detail: Any,
    ) -> list[str]:
        """For the older paths, which name a status: every step from the current status to
        ``target``, each recorded in ``filing_step``, audited once as ``audit_action``; the steps
        taken.  ``client_status_conflict`` when ``target`` cannot be reached."""
        row = await self._row(application_id)
        try:
            steps = workflow.path_to(row["status"], target)
        except workflow.StepRefused:
            raise AppError(
                "client_status_conflict", f"{row['status']} → {target} is not allowed"
            ) from None
        async with self.platform.engine.transaction():
            for step in steps:
                await self._take(application_id, step, reason, actor)
            await audit(actor, audit_action, "client", application_id, reason, **detail)
        credentials.forget(application_id)
        return [str(s) for s in steps]

    # --- credentials ---------------------------------------------------------------------------

    async def _insert_credential(
        self,
        application_id: str,
        kind: str,
        actor: str,
        now: int,
        *,
        secret: str | None = None,
        jwk: dict[str, str] | None = None,
    ) -> str:
        # time-ordered (nanoseconds, then randomness): listings sort by creation
        credential_id = f"{time.time_ns():016x}{secrets.token_hex(8)}"
        await PartnerCredential.insert(
            PartnerCredential(
                id=credential_id,
                application=application_id,
                kind=kind,
                secret_digest=credentials.digest(secret) if secret else None,
                public_jwk=json.dumps(jwk) if jwk else None,
                kid=credentials.key_id(jwk) if jwk else None,
                created_at=now,
                created_by=actor,
            )
        ).run()
        return credential_id

    async def add_credential(
        self,
        application_id: str,
        data: schemas.CredentialCreate,
        actor: str,
        *,
        secret: str | None = None,
    ) -> schemas.CredentialIssued:
        """Rotation: a new secret (shown once; ``secret`` lets a caller that prints it itself
        choose it) or public key; the filing's earlier usable credentials of that kind keep
        working until now + the overlap (default :data:`DEFAULT_OVERLAP_SECONDS`, at most
        :data:`MAX_OVERLAP_SECONDS`; 0 ends them at once)."""
        row = await self._row(application_id)
        overlap = DEFAULT_OVERLAP_SECONDS if data.overlap_seconds is None else data.overlap_seconds
        if overlap > MAX_OVERLAP_SECONDS:
            raise AppError(
                "validation_failed", f"overlap_seconds may be at most {MAX_OVERLAP_SECONDS}"
            )
        jwk = None
        if data.kind == "jwk":
            try:
                jwk = credentials.checked_public_jwk(data.jwk)
            except ValueError as exc:
                raise AppError("validation_failed", f"jwk: {exc}") from None
        elif data.jwk is not None:
            raise AppError("validation_failed", "a secret is generated here: send no jwk")
        else:
            prefix = LOGIN_SECRET_PREFIX if row["id"].startswith("rp_") else None
            secret = secret or (
                prefix + secrets.token_urlsafe(32) if prefix else credentials.new_secret()
            )
        now = int(time.time())
        until = now + overlap
        async with self.platform.engine.transaction():
            earlier = PartnerCredential.update({PartnerCredential.not_after: until}).where(
                (PartnerCredential.application == application_id)
                & (PartnerCredential.kind == data.kind)
                & PartnerCredential.ended_at.is_null()
                & (PartnerCredential.not_after.is_null() | (PartnerCredential.not_after > until))
            )
            await earlier
            credential_id = await self._insert_credential(
                application_id, data.kind, actor, now, secret=secret, jwk=jwk
            )
            await audit(
                actor,
                "credential.add",
                "client",
                application_id,
                data.reason,
                credential=credential_id,
                kind=data.kind,
                overlap_until=until,
            )
        credentials.forget(application_id)
        created = await PartnerCredential.select().where(PartnerCredential.id == credential_id)
        return schemas.CredentialIssued(
            credential=_credential_view(created[0], now),
            overlap_until=until,
            client_secret=secret if data.kind == "secret" else None,
        )

    async def list_credentials(self, application_id: str) -> list[schemas.CredentialView]:
        await self._row(application_id)
        rows = await (
            PartnerCredential.select()
            .where(PartnerCredential.application == application_id)
            .order_by(PartnerCredential.id)
        )
        now = time.time()
        return [_credential_view(row, now) for row in rows]

    async def end_credential(
        self, application_id: str, credential_id: str, actor: str, reason: str = ""
    ) -> schemas.CredentialView:
        """End one credential at once (a leaked secret, a lost key)."""
        now = int(time.time())
        async with self.platform.engine.transaction():
            ended = (
                await PartnerCredential.update(
                    {PartnerCredential.ended_at: now, PartnerCredential.ended_by: actor}
                )
                .where(
                    (PartnerCredential.id == credential_id)
                    & (PartnerCredential.application == application_id)
                    & PartnerCredential.ended_at.is_null()
                )
                .returning(PartnerCredential.id)
            )
            if not ended:
                raise AppError("credential_not_found")
            await audit(
                actor, "credential.end", "client", application_id, reason, credential=credential_id
            )
        credentials.forget(application_id)
        rows = await PartnerCredential.select().where(PartnerCredential.id == credential_id)
        return _credential_view(rows[0], now)
