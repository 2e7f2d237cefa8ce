"""The Flask app factory: configuration, the two blueprints (JSON API, page), security headers,
and the one place crossmodal errors become HTTP statuses.

Every error is JSON ``{"error": "..."}`` with a fitting status and never a stack trace or a
server path: 400 bad field, 404 unknown item or route, 409 collection busy, 413 too large, 415
wrong media type, 422 undecodable media, 503 collection unavailable, 500 otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import crossmodal.web
from crossmodal.core import Engine
from crossmodal.errors import (
    BusyError,
    CrossmodalError,
    DecodeError,
    InputError,
    MediaTypeError,
    NotFoundError,
    StorageError,
    TooLargeError,
)
from crossmodal.server.api import api
from crossmodal.server.page import page
from crossmodal.settings import Settings

LOG = logging.getLogger("crossmodal.http")
WEB_DIR = Path(crossmodal.web.__file__).parent

STATUS_OF: tuple[tuple[type[CrossmodalError], int], ...] = (
    (TooLargeError, 413), (MediaTypeError, 415), (InputError, 400), (NotFoundError, 404),
    (DecodeError, 422), (BusyError, 409), (StorageError, 503),
)
"""Most specific first: the first class an error is an instance of gives its status."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def status_of(exc: CrossmodalError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def create_app(engine: Engine, settings: Settings | None = None) -> Flask:
    """The Flask app serving the API under /api and the page at /."""
    settings = settings or engine.settings
    app = Flask(__name__, template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static"),
                static_url_path="/static")
    max_bytes = int(settings.server.max_upload_mb * (1 << 20))
    app.config.update(MAX_CONTENT_LENGTH=max_bytes, MAX_FORM_MEMORY_SIZE=1 << 20, JSON_SORT_KEYS=False)
    app.extensions["crossmodal.engine"] = engine
    app.extensions["crossmodal.settings"] = settings
    app.register_blueprint(api)
    app.register_blueprint(page)

    @app.errorhandler(CrossmodalError)
    def _crossmodal_error(exc: CrossmodalError):
        status = status_of(exc)
        if status >= 500:
            LOG.error("%s %s: %s", request.method, request.path, exc)
            message = "the collection is unavailable; the server log has the details" if status == 503 else \
                "internal error; the server log has the details"
            return jsonify(error=message), status
        return jsonify(error=str(exc)), status

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        return jsonify(error=f"request body larger than {settings.server.max_upload_mb:g} MB"), 413

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        LOG.exception("unexpected error serving %s %s", request.method, request.path)
        return jsonify(error="internal error; the server log has the details"), 500

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return app
