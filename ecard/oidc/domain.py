"""The OpenID provider and scan-to-login (扫码登录)."""

from ecard.domain import Domain
from ecard.oidc import controllers, piccolo_app

DOMAIN = Domain(
    name="oidc", controllers=tuple(controllers.CONTROLLERS), piccolo_app=piccolo_app.APP_CONFIG
)
