"""Entry point for servers: granian in RSGI (``ecard serve``), or any ASGI server (uvicorn);
settings come from the environment.

Each worker writes the Python stack of every thread to stderr if it dies of a fatal signal
(``faulthandler``), so a crash leaves its cause in the server's log; ``ecard serve`` then
respawns the worker."""

import faulthandler

from ecard.app import create_app
from ecard.settings import load_settings

faulthandler.enable()
app = create_app(load_settings())
