"""``ferkit serve``: an HTTP API and a web page over one :class:`~ferkit.Recognizer`.

    from ferkit.serve import create_app
    app = create_app()                          # loads the default model and MTCNN once
    # uvicorn.run(app) -- or `ferkit serve --port 8000`

Endpoints: ``POST /v1/analyze`` (multipart field ``file``: the ``ferkit predict --json`` object
of the image; ``?annotated=1``: the annotated PNG), ``GET /healthz``, ``GET /`` (the web page:
photo upload and live webcam), ``GET /docs`` (OpenAPI, served without a CDN).
"""

from __future__ import annotations

from .app import ALLOWED_CONTENT_TYPES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD, DEFAULT_TIMEOUT, create_app
from .server import ServerThread, bind, run

__all__ = ["create_app", "run", "bind", "ServerThread", "DEFAULT_MAX_UPLOAD", "DEFAULT_MAX_PIXELS",
           "DEFAULT_TIMEOUT", "ALLOWED_CONTENT_TYPES"]
