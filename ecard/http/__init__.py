"""The HTTP layer every domain shares, one module per concern; ``ecard.app.create_app`` puts it
together with the domains' controllers.

- :mod:`ecard.http.responses`: response helpers for controllers (``etagged``, ``json_headers``).
- :mod:`ecard.http.hot_routes`: what a domain declares to be served ahead of Litestar's routing
  (``HotRoute``) and what such a handler returns (``JsonReply``).
- :mod:`ecard.http.application`: ``EcardApp``, the Litestar application that serves those routes
  itself, in RSGI (granian) or ASGI, and bridges every other request to Litestar.
- :mod:`ecard.http.system`: the platform's own endpoints (``/healthz``, ``/readyz``, JWKS,
  ``/problems``, ``/metrics``).
- :mod:`ecard.http.openapi`: the OpenAPI document's configuration and the problem responses
  every operation declares.
- :mod:`ecard.http.lifespan`: the application's lifespan (the ``Platform`` and the domains'
  background tasks).

Where the rest lives: the edge every request passes (request id, security headers, access log,
metrics, proxies) in :mod:`ecard.edge`; the RSGI-to-ASGI bridge in :mod:`ecard.rsgi`; the error
catalogue and its exception handlers in :mod:`ecard.errors`; logging in :mod:`ecard.logs`.

Nothing here imports ``ecard.app``, and nothing imports a domain but the readiness probe of
``/readyz`` (the consent domain's ledger bridge): controllers import these modules, never the app
(``tests/unit/test_app_imports.py``).
"""
