"""The Flask app factory: configuration, access rules (`access.py`), the two blueprints (JSON
API, page), security headers, and the one place crossmodal errors become HTTP statuses.

Every error is JSON ``{"error": "..."}`` with a fitting status and never a stack trace or a
server path: 400 bad field, 401 no token, 403 not yours or wrong host, 404 unknown item or route,
409 collection busy, 413 too large, 415 wrong media type, 422 undecodable media, 503 collection
unavailable, 500 otherwise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import crossmodal.web
from crossmodal.core import Engine
from crossmodal.errors import (
    AccessError,
    BusyError,
    CrossmodalError,
    DecodeError,
    InputError,
    MediaTypeError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
    TooLargeError,
)
from crossmodal.server.access import Access
from crossmodal.server.api import api
from crossmodal.server.page import page
from crossmodal.settings import Settings

LOG = logging.getLogger("crossmodal.http")
WEB_DIR = Path(crossmodal.web.__file__).parent
TOKEN_ENV = "CROSSMODAL_TOKEN"
USER_KEY = "server-user-signing"

STATUS_OF: tuple[tuple[type[CrossmodalError], int], ...] = (
    (TooLargeError, 413), (MediaTypeError, 415), (InputError, 400), (AccessError, 403), (NotFoundError, 404),
    (DecodeError, 422), (BusyError, 409), (ReadOnlyError, 409), (StorageError, 503),
)
"""Most specific first: the first class an error is an instance of gives its status."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'")
OPEN_PATHS = ("/static/", "/login")


def status_of(exc: CrossmodalError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def server_token(settings: Settings) -> str:
    """The token protecting the server: ``[server] token`` (which `serve --token` sets), else
    the CROSSMODAL_TOKEN environment variable; empty for none."""
    return settings.server.token or os.environ.get(TOKEN_ENV, "")


def create_app(engine: Engine, settings: Settings | None = None, host: str = "127.0.0.1") -> Flask:
    """The Flask app serving the API under /api and the page at /, for a server bound to ``host``."""
    settings = settings or engine.settings
    app = Flask(__name__, template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static"),
                static_url_path="/static")
    max_bytes = int(settings.server.max_upload_mb * (1 << 20))
    app.config.update(MAX_CONTENT_LENGTH=max_bytes, MAX_FORM_MEMORY_SIZE=1 << 20, JSON_SORT_KEYS=False)
    access = Access.for_server(server_token(settings), engine.secret(USER_KEY), host,
                               settings.server.allowed_hosts, settings.server.session_hours)
    app.extensions.update({"crossmodal.engine": engine, "crossmodal.settings": settings,
                           "crossmodal.access": access})
    app.register_blueprint(api)
    app.register_blueprint(page)

    @app.before_request
    def _admit():
        if not access.host_allowed(request):
            return jsonify(error=f"host: {request.host!r} is not a name this server answers to; add it to "
                                 f"[server] allowed_hosts"), 403
        g.user = access.user(request)
        g.new_user_cookie = None
        if g.user is None:
            g.user, g.new_user_cookie = access.new_user()
        if request.path.startswith(OPEN_PATHS) or access.authenticated(request):
            return None
        if request.path.startswith("/api/"):
            response = jsonify(error="authentication required: send the server's token as 'Authorization: "
                                     "Bearer TOKEN', or log in at /")
            response.headers["WWW-Authenticate"] = 'Bearer realm="crossmodal"'
            return response, 401
        return render_template("login.html", collection=engine.name, failed=False), 401

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
        if getattr(g, "new_user_cookie", None):
            access.set_user_cookie(response, g.new_user_cookie, secure=request.is_secure)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return app
