"""What every step of the provider works with: the platform, the policy, the ephemeral store, the
issuer, the filed clients (:class:`~ecard.oidc.service.OidcService`), rate limits and refusals.

The steps themselves live in modules named after the spec's steps (``authorization``,
``login_session``, ``grants/*``, ``tokens``, ``userinfo``, ``revocation``, ``introspection``,
``end_session``, ``discovery``); each takes a :class:`Provider` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecard.errors import rate_limited
from ecard.oidc.policy import OidcPolicy, current_policy
from ecard.oidc.service import OidcService
from ecard.platform import Platform
from ecard.registry.service import audit_refusal
from ecard.store.ephemeral import EphemeralStore


@dataclass
class Provider:
    platform: Platform
    policy: OidcPolicy = field(init=False)
    store: EphemeralStore = field(init=False)
    issuer: str = field(init=False)
    #: filing and authentication of relying parties
    clients: OidcService = field(init=False)

    def __post_init__(self) -> None:
        self.policy = current_policy()
        self.store = self.platform.store
        self.issuer = self.platform.settings.public_url.rstrip("/")
        self.clients = OidcService(self.platform)

    async def limit(self, key: str, window: int, limit: int) -> None:
        """Count one hit of ``key``; ``rate_limited`` (429) past ``limit`` per ``window`` s."""
        decision = await self.store.hit(key, window, limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after, "temporarily_unavailable")

    async def refused(self, actor: str, action: str, client_id: str, reason: str) -> None:
        """Audit a refusal (``oidc.<action>.refused``), bursts folded into one row."""
        await audit_refusal(
            self.platform,
            actor,
            f"oidc.{action}.refused",
            "oidc_client",
            client_id[:40] or "-",
            reason,
        )
