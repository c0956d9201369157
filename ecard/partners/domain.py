"""The application catalogue (应用目录备案): one filing per partner system, its workflow and its
credentials.  Its migrations run after the ``oidc`` app's: the first ones move both older tables'
rows into filings."""

from ecard.domain import Domain
from ecard.partners import controllers, piccolo_app

DOMAIN = Domain(
    name="partners", controllers=tuple(controllers.CONTROLLERS), piccolo_app=piccolo_app.APP_CONFIG
)
