"""The signed directory feed (服务同源、全国互联), pure: signing and opening it with the platform
root key (the same compact ES256 JWS as the trust list, ``ecard.offline.documents``), the rules an
entry of the directory keeps whoever wrote it, and the rules a receiver applies to a peer's feed,
one refusal per rule, in order.
"""

from __future__ import annotations

from collections.abc import Collection

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.directory import catalogue as cat
from ecard.directory.schemas import (
    ApplicationEntry,
    ApplicationIn,
    DirectoryFeed,
    InstitutionEntry,
    InstitutionIn,
)
from ecard.offline.documents import DEFAULT_SKEW_SECONDS, open_document, sign_document

FEED_TYPE = "ecard-directory-feed+json"


class FeedRefused(ValueError):
    """A peer's feed is not taken; ``reason`` is one of the ``check_feed`` rules."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def sign_feed(feed: DirectoryFeed, root_private_key: ec.EllipticCurvePrivateKey) -> str:
    return sign_document(feed, FEED_TYPE, root_private_key)


def open_feed(token: str, root_public_key: ec.EllipticCurvePublicKey) -> DirectoryFeed:
    """The feed if ``token`` is a feed signed by the key; else ``OfflineError``."""
    return open_document(token, FEED_TYPE, DirectoryFeed, root_public_key)


# --- what every entry keeps -------------------------------------------------------------------


def application_province(regions: Collection[str], provinces: Collection[str]) -> str:
    """The one province of ``provinces`` all served regions lie in (a listing is its province's)."""
    for code in regions:
        cat.check_region(code, provinces)
    found = {code[:2] + "0000" for code in regions}
    if len(found) != 1:
        raise cat.CatalogueError(
            "directory_foreign_province", "regions: a listing serves one province's regions"
        )
    return found.pop()


def check_application(data: ApplicationIn | ApplicationEntry, provinces: Collection[str]) -> str:
    """A listing's rules; returns its province."""
    cat.check_codes("scenarios", data.scenarios, cat.SCENARIOS, "directory_scenario_unknown")
    cat.check_codes("media", data.media, cat.MEDIA, "directory_medium_unknown")
    if len(set(data.regions)) != len(data.regions):
        raise cat.CatalogueError("invalid_region_code", "regions: listed twice")
    province = application_province(data.regions, provinces)
    if data.entry_url is not None:
        cat.check_entry_url(data.entry_url)
    return province


def check_institution(
    data: InstitutionIn | InstitutionEntry, provinces: Collection[str], *, published: bool = False
) -> str:
    """An institution's rules; returns its province.  ``published``: an entry as a feed carries
    it, whose media may be empty (no live terminal accepts anything there today)."""
    cat.check_uscc(data.uscc)
    if data.kind not in cat.INSTITUTION_KINDS:
        raise cat.CatalogueError("directory_entry_invalid", f"kind: unknown {data.kind}")
    cat.check_region(data.region, provinces, level="local")
    cat.check_location(data.lat, data.lon)
    for rule in data.hours:
        cat.check_hours(rule.days, rule.opens, rule.closes)
    cat.check_codes("scenarios", data.scenarios, cat.SCENARIOS, "directory_scenario_unknown")
    if data.media or not published:
        cat.check_codes("media", data.media, cat.TERMINAL_MEDIA, "directory_medium_unknown")
    return data.region[:2] + "0000"


# --- what a receiver checks -------------------------------------------------------------------


def check_feed(
    feed: DirectoryFeed,
    *,
    provinces: Collection[str],
    held_version: int,
    asked_since: int,
    now: int,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
) -> None:
    """Rules a peer's (signature-checked) feed must keep, in order:

    1. it speaks for the configured provinces only (``provinces``: the peer's);
    2. its version never goes back (``held_version``: the last one taken), ``since`` ≤ version;
    3. it is a full snapshot or starts where we asked (``asked_since``): a delta from a later
       version would skip changes;
    4. it was not issued in the future;
    5. every entry and tombstone is of one of those provinces (its id and its place), changed
       within (since, version], and keeps the directory's rules.
    """
    claimed = set(feed.provinces)
    if not claimed or not claimed <= set(provinces):
        raise FeedRefused("wrong_province", f"feed speaks for {sorted(claimed)}")
    if feed.version < held_version:
        raise FeedRefused("rollback", f"version {feed.version} is older than {held_version}")
    if feed.since > feed.version:
        raise FeedRefused("malformed", "since is after version")
    if feed.since not in (0, asked_since):
        raise FeedRefused("gap", f"delta from {feed.since}, asked from {asked_since}")
    if feed.issued_at > now + skew_seconds:
        raise FeedRefused("not_yet_valid", "issued in the future")
    low = feed.since if feed.since else -1
    entries: list[ApplicationEntry | InstitutionEntry] = [*feed.applications, *feed.institutions]
    for entry in entries:
        where = f"{type(entry).__name__} {entry.id}"
        if entry.province not in claimed or not entry.id.startswith(entry.province + "-"):
            raise FeedRefused("wrong_province", f"{where} is not of the feed's provinces")
        if not low < entry.version <= feed.version:
            raise FeedRefused("malformed", f"{where}: version outside the feed's range")
        try:
            if isinstance(entry, ApplicationEntry):
                province = check_application(entry, claimed)
                if entry.fields != cat.fields_of(entry.scenarios):
                    raise cat.CatalogueError("directory_entry_invalid", "fields")
            else:
                province = check_institution(entry, claimed, published=True)
        except cat.CatalogueError as error:
            raise FeedRefused("invalid_entry", f"{where}: {error.detail}") from None
        if province != entry.province:
            raise FeedRefused("wrong_province", f"{where} lies in {province}")
    for tomb in feed.tombstones:
        if not any(tomb.id.startswith(p + "-") for p in claimed):
            raise FeedRefused("wrong_province", f"tombstone {tomb.id} is not of its provinces")
        if not low < tomb.version <= feed.version:
            raise FeedRefused("malformed", f"tombstone {tomb.id}: version outside the range")
