"""The 电子社保卡密码: six digits, one per person, valid on every channel (``docs/front-door.md``).

Rules kept here:
- set once (``password_already_set`` after that); changed only by a reset through a channel's 实人
  evidence (:mod:`ecard.registry.evidence`, purpose ``password_reset``, signed by the channel of
  the holder's session);
- trivial passwords are refused, one named rule each: one digit repeated, an ascending or
  descending run, the birth date (MMDD anywhere, YYMMDD, DDMMYY);
- stored as argon2id (:mod:`ecard.crypto.passwords`), hashed and checked off the event loop;
- wrong attempts lock the person's password with growing delays (:func:`lock_seconds`: after
  :data:`FREE_FAILURES` wrong ones 60 s, then doubling, at most 24 h); the state is in the
  ``holder_credential`` row, so a lock survives restarts and holds on every worker; a right
  password resets it.  Each attempt is counted *before* the hash is checked (compare-and-set on
  the failure count), so racing guesses cannot pass the limit;
- the password is never logged, never in an audit row, never in an error message.

Other code calls :func:`verify_holder_password` for step-up (approving a scan-to-login or a
consent, undoing a 临时挂失) and :func:`person_of_holder` to name the person of a session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ecard.auth import HolderPrincipal
from ecard.crypto.passwords import hash_password, verify_password
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry import evidence, schemas
from ecard.registry.audit import audit, new_id
from ecard.registry.tables import ECard, HolderCredential, Person
from ecard.store.db import as_date, is_unique_violation

LENGTH = 6
#: Wrong attempts allowed before the first lock.
FREE_FAILURES = 3
FIRST_LOCK_SECONDS = 60
MAX_LOCK_SECONDS = 86_400
#: Compare-and-set rounds before a burst of attempts on one password is answered "retry".
_CAS_ROUNDS = 8

#: The clock the lockout reads (tests replace it to drive time without sleeping).
clock: Callable[[], float] = time.time


def lock_seconds(failures: int) -> int:
    """How long the password is locked after ``failures`` wrong attempts in a row: 0 below
    :data:`FREE_FAILURES`, then 60 s, 120 s, 240 s … at most 24 h."""
    if failures < FREE_FAILURES:
        return 0
    return min(FIRST_LOCK_SECONDS * 2 ** min(failures - FREE_FAILURES, 20), MAX_LOCK_SECONDS)


# --- trivial passwords: one rule each ------------------------------------------------------


def rule_six_digits(password: str) -> None:
    """Exactly six ASCII digits."""
    if len(password) != LENGTH or not all("0" <= c <= "9" for c in password):
        raise AppError("validation_failed", "the password is six digits")


def rule_not_one_digit(password: str) -> None:
    """Not one digit repeated (000000, 111111 …)."""
    if len(set(password)) == 1:
        raise AppError("password_too_weak", "one digit repeated")


def rule_not_a_run(password: str) -> None:
    """Not an ascending or descending run (123456, 654321, 890123 …, wrapping past 9 or 0)."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(password)}
    if steps in ({1}, {9}):
        raise AppError("password_too_weak", "a run of consecutive digits")


def rule_not_birth_date(password: str, birth_date: dt.date) -> None:
    """Not the birth date: its MMDD anywhere in the password, its YYMMDD or DDMMYY."""
    mmdd = birth_date.strftime("%m%d")
    if mmdd in password or password in (
        birth_date.strftime("%y%m%d"),
        birth_date.strftime("%d%m%y"),
    ):
        raise AppError("password_too_weak", "the birth date")


def check_strength(password: str, birth_date: dt.date) -> None:
    """Every rule above, in order; pure."""
    rule_six_digits(password)
    rule_not_one_digit(password)
    rule_not_a_run(password)
    rule_not_birth_date(password, birth_date)


# --- with the database -----------------------------------------------------------------------


async def person_of_holder(holder: HolderPrincipal) -> str:
    """The person whose e-card the session is (the e-card follows the person's current card)."""
    row = (
        await ECard.select(ECard.card.person.as_alias("person"))
        .where(ECard.id == holder.ecard_id)
        .first()
    )
    if row is None or row["person"] is None:
        raise AppError("ecard_not_found")
    return row["person"]


async def verify_holder_password(
    platform: Platform, person_id: str, password: str, *, actor: str | None = None
) -> None:
    """Step-up: return when ``password`` is the person's; else raise ``password_not_set`` (409),
    ``password_locked`` (429, ``Retry-After``; also when this wrong attempt starts a lock) or
    ``password_invalid`` (403, the attempts left before a lock in its detail).  Each attempt is
    counted before the hash is checked; a right one resets the count.  ``actor`` names who asked
    in the audit row of a wrong attempt (ids only)."""
    row: dict | None = None
    for _ in range(_CAS_ROUNDS):
        row = await HolderCredential.select().where(HolderCredential.person == person_id).first()
        if row is None:
            raise AppError("password_not_set")
        now = clock()
        _refuse_if_locked(row["locked_until"], now)
        failures = row["failures"] + 1
        lock = lock_seconds(failures)
        reserved = (
            await HolderCredential.update(
                {
                    HolderCredential.failures: failures,
                    HolderCredential.locked_until: math.ceil(now) + lock if lock else None,
                }
            )
            .where(
                (HolderCredential.id == row["id"]) & (HolderCredential.failures == row["failures"])
            )
            .returning(HolderCredential.id)
        )
        if reserved:
            break
    else:
        raise AppError(
            "password_locked", "too many attempts at once; retry", headers={"Retry-After": "1"}
        )
    if row is None:  # unreachable: the loop leaves with a row or raises
        raise AppError("password_not_set")
    if await asyncio.to_thread(verify_password, password, row["password_hash"]):
        await HolderCredential.update(
            {HolderCredential.failures: 0, HolderCredential.locked_until: None}
        ).where(HolderCredential.id == row["id"])
        return
    await audit(
        actor or "system:holder-password",
        "holder.password.wrong",
        "person",
        person_id,
        failures=failures,
    )
    if lock:
        raise AppError(
            "password_locked",
            f"wrong password; locked for {lock} s",
            headers={"Retry-After": str(lock)},
        )
    left = FREE_FAILURES - failures
    raise AppError(
        "password_invalid",
        f"wrong password; {left} attempt(s) left before a lock",
        extra={"left": left},
    )


def _refuse_if_locked(locked_until: int | None, now: float) -> None:
    if locked_until is not None and locked_until > now:
        wait = max(1, math.ceil(locked_until - now))
        raise AppError(
            "password_locked", f"locked for {wait} more s", headers={"Retry-After": str(wait)}
        )


@dataclass
class HolderPasswords:
    """The holder's own password routes: state, first set, reset through 实人 evidence."""

    platform: Platform

    async def state(self, holder: HolderPrincipal) -> schemas.HolderPasswordState:
        person_id = await person_of_holder(holder)
        row = (
            await HolderCredential.select(HolderCredential.locked_until)
            .where(HolderCredential.person == person_id)
            .first()
        )
        if row is None:
            return schemas.HolderPasswordState(set=False)
        locked = row["locked_until"]
        return schemas.HolderPasswordState(
            set=True, locked_until=locked if locked and locked > clock() else None
        )

    async def _person(self, person_id: str) -> dict:
        row = (
            await Person.select(Person.id, Person.birth_date, Person.id_number_enc)
            .where(Person.id == person_id)
            .first()
        )
        if row is None:
            raise AppError("person_not_found")
        return row

    async def set_first(
        self, holder: HolderPrincipal, password: str
    ) -> schemas.HolderPasswordState:
        """The person's first password (``password_already_set`` when there is one)."""
        person_id = await person_of_holder(holder)
        if await HolderCredential.exists().where(HolderCredential.person == person_id):
            raise AppError("password_already_set")
        check_strength(password, as_date((await self._person(person_id))["birth_date"]))
        digest = await asyncio.to_thread(hash_password, password)
        try:
            async with self.platform.engine.transaction():
                await HolderCredential.insert(
                    HolderCredential(id=new_id(), person=person_id, password_hash=digest)
                ).run()
                await audit(
                    holder.actor,
                    "holder.password.set",
                    "person",
                    person_id,
                    channel=holder.channel_id,
                )
        except Exception as exc:
            if is_unique_violation(exc):  # a racing first set won
                raise AppError("password_already_set") from None
            raise
        return schemas.HolderPasswordState(set=True)

    async def reset(
        self, holder: HolderPrincipal, password: str, token: str | None
    ) -> schemas.HolderPasswordState:
        """A new password (set or not, locked or not) through the 实人 evidence of the channel of
        the holder's session, made for this person; ends any lock.  Recorded in
        ``liveness_evidence`` (purpose ``password_reset``) and audited (ids only)."""
        person_id = await person_of_holder(holder)
        person = await self._person(person_id)
        card = (
            await ECard.select(ECard.card.id.as_alias("card"), ECard.card.region.as_alias("region"))
            .where(ECard.id == holder.ecard_id)
            .first()
        )
        if card is None:
            raise AppError("ecard_not_found")
        check_strength(password, as_date(person["birth_date"]))
        number = self.platform.field_cipher.decrypt(
            bytes(person["id_number_enc"]), f"person:{person_id}"
        )
        try:
            proof = await evidence.accept_evidence(
                self.platform,
                token,
                channel_id=holder.channel_id,
                identity_number=number,
                region=card["region"],
                purpose="password_reset",
            )
        except AppError as exc:
            await audit(
                holder.actor, "holder.password.reset.refused", "person", person_id, exc.code
            )
            raise
        digest = await asyncio.to_thread(hash_password, password)
        async with self.platform.engine.transaction():
            updated = (
                await HolderCredential.update(
                    {
                        HolderCredential.password_hash: digest,
                        HolderCredential.failures: 0,
                        HolderCredential.locked_until: None,
                        HolderCredential.updated_at: dt.datetime.now(dt.UTC),
                    }
                )
                .where(HolderCredential.person == person_id)
                .returning(HolderCredential.id)
            )
            if not updated:
                await HolderCredential.insert(
                    HolderCredential(id=new_id(), person=person_id, password_hash=digest)
                ).run()
            evidence_id = await evidence.record_evidence(
                proof, ecard_id=holder.ecard_id, card_id=card["card"], purpose="password_reset"
            )
            await audit(
                holder.actor,
                "holder.password.reset",
                "person",
                person_id,
                evidence=evidence_id,
                method=proof.method,
            )
        return schemas.HolderPasswordState(set=True)


async def provision_password(platform: Platform, person_id: str, password: str, actor: str) -> None:
    """Set or replace a person's password without a holder session (demo data, seeding): the
    strength rules still hold; any lock ends; audited as ``holder.password.set`` by ``actor``."""
    person = await HolderPasswords(platform)._person(person_id)
    check_strength(password, as_date(person["birth_date"]))
    digest = await asyncio.to_thread(hash_password, password)
    async with platform.engine.transaction():
        updated = (
            await HolderCredential.update(
                {
                    HolderCredential.password_hash: digest,
                    HolderCredential.failures: 0,
                    HolderCredential.locked_until: None,
                }
            )
            .where(HolderCredential.person == person_id)
            .returning(HolderCredential.id)
        )
        if not updated:
            await HolderCredential.insert(
                HolderCredential(id=new_id(), person=person_id, password_hash=digest)
            ).run()
        await audit(actor, "holder.password.set", "person", person_id)


__all__ = [
    "HolderPasswords",
    "check_strength",
    "lock_seconds",
    "person_of_holder",
    "provision_password",
    "verify_holder_password",
]
