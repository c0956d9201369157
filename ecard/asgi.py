"""Entry point for servers: granian in RSGI (``ecard serve``), or any ASGI server (uvicorn);
settings come from the environment."""

from ecard.app import create_app
from ecard.settings import load_settings

app = create_app(load_settings())
