"""The HTTP API and the web page, as a Flask app factory over one `Engine`.

Every error is JSON ``{"error": "..."}`` with a fitting status (400 bad field, 404 unknown,
413 too large, 415 wrong media type, 422 undecodable media, 500 otherwise) and never a stack
trace or a server path. Media routes serve only catalogued files, looked up by item id.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import crossmodal.web
from crossmodal import __version__
from crossmodal.catalog import FEEDBACK_EVENTS
from crossmodal.engine import Engine
from crossmodal.errors import CrossmodalError, DecodeError
from crossmodal.ingest.decode import DecodeLimits, decode_image
from crossmodal.ingest.sniff import SNIFF_BYTES, mime_type
from crossmodal.openapi import openapi_document
from crossmodal.query import Filters, Query, QueryError, QueryPart, parse_targets, parse_weights
from crossmodal.settings import Settings
from crossmodal.uploads import UploadError, UploadFolder

LOG = logging.getLogger("crossmodal.http")
WEB_DIR = Path(crossmodal.web.__file__).parent
THUMBNAIL_SIZES = (64, 128, 256, 512)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _int_field(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ApiError(400, f"{name}: expected an integer from {low} to {high}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name}: expected an integer from {low} to {high}, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise ApiError(400, f"{name}: expected an integer from {low} to {high}, got {number}")
    return number


def _str_field(value: Any, name: str, limit: int = 2000) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: expected a string")
    if len(value) > limit:
        raise ApiError(400, f"{name}: longer than {limit} characters")
    return value


def _filters(raw: Any) -> Filters:
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise ApiError(400, "filters: expected an object")
    unknown = set(raw) - {"modalities", "uri_glob", "meta", "after", "before"}
    if unknown:
        raise ApiError(400, f"filters: unknown field(s) {sorted(unknown)}")
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, (str, int, float)) for v in meta.values()):
        raise ApiError(400, "filters.meta: expected an object of strings")
    modalities = raw.get("modalities") or []
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise ApiError(400, "filters.modalities: expected a list of modality names")
    bounds = {}
    for key in ("after", "before"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ApiError(400, f"filters.{key}: expected seconds since the epoch")
        bounds[key] = None if value is None else float(value)
    return Filters(modalities=tuple(modalities), uri_glob=_str_field(raw.get("uri_glob"), "filters.uri_glob", 500),
                   meta={str(k): str(v) for k, v in meta.items()}, **bounds)


def _sanitise(reason: str, folder: UploadFolder) -> str:
    """Decoder messages may quote the temporary path; a client should never see server paths."""
    return reason.replace(str(folder.path) + "/", "").replace(str(folder.path), "upload")


def create_app(engine: Engine, settings: Settings | None = None) -> Flask:
    """The Flask app serving the API under /api and the page at /."""
    settings = settings or engine.settings
    app = Flask(__name__, template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static"),
                static_url_path="/static")
    max_bytes = int(settings.server.max_upload_mb * (1 << 20))
    app.config.update(MAX_CONTENT_LENGTH=max_bytes, MAX_FORM_MEMORY_SIZE=1 << 20, JSON_SORT_KEYS=False)
    app.extensions["crossmodal.engine"] = engine

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status

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
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return response

    @app.get("/")
    def index():
        return render_template("index.html", collection=engine.collection.name, version=__version__)

    @app.get("/api/health")
    def health():
        counts = engine.collection.catalog.counts()
        return jsonify(status="ok", collection=engine.collection.name, model=engine.collection.model.model_id,
                       items=counts.get("items", 0), stale=engine.stale, version=__version__)

    @app.get("/api/openapi.json")
    def openapi():
        return jsonify(openapi_document(max_bytes))

    @app.post("/api/search")
    def search():
        with UploadFolder() as folder:
            try:
                query = _parse_search(folder)
                response = engine.search(query)
            except UploadError as exc:
                raise ApiError(exc.status, str(exc)) from None
            except DecodeError as exc:
                field = "image" if "image" in Path(exc.path).name else "audio"
                raise ApiError(422, f"{field}: cannot decode ({_sanitise(exc.reason, folder)})") from None
            except QueryError as exc:
                raise ApiError(400, str(exc)) from None
            return jsonify(response.as_dict(explain=query.explain))

    def _parse_search(folder: UploadFolder) -> Query:
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(400, "body: expected a JSON object")
            unknown = set(body) - {"text", "k", "targets", "weights", "user", "explain", "fusion", "merge", "filters"}
            if unknown:
                raise ApiError(400, f"body: unknown field(s) {sorted(unknown)}")
            text = _str_field(body.get("text"), "text")
            parts = [QueryPart("text", text=text)] if text is not None else []
            get = body.get
            filters = _filters(body.get("filters"))
        else:
            form = request.form
            text = _str_field(form.get("text"), "text")
            parts = [QueryPart("text", text=text)] if text is not None and text.strip() else []
            for field in ("image", "audio"):
                upload = request.files.get(field)
                if upload is not None and upload.filename:
                    path = folder.save(field, upload.stream, field, max_bytes)
                    parts.append(QueryPart(field, path=path))
            get = form.get
            filters = Filters()
        if not parts:
            raise ApiError(400, "query: give text, an image or an audio clip")
        weights_raw = get("weights")
        if isinstance(weights_raw, list):
            weights_raw = ",".join(str(w) for w in weights_raw)
        weights = parse_weights(_str_field(weights_raw, "weights", 200), len(parts))
        parts = [QueryPart(p.modality, text=p.text, path=p.path, weight=w) for p, w in zip(parts, weights)]
        targets_raw = get("targets")
        if targets_raw is not None and not isinstance(targets_raw, (str, list)):
            raise ApiError(400, "targets: expected a list or a comma-separated string")
        targets = parse_targets(targets_raw or None)
        k = _int_field(get("k", 10), "k", 1, settings.server.max_k)
        user = _str_field(get("user"), "user", 200)
        fusion = _str_field(get("fusion"), "fusion", 10)
        merge = _str_field(get("merge"), "merge", 10)
        return Query(tuple(parts), targets=targets, k=k, filters=filters, user=user, fusion=fusion,
                     late_merge=merge, explain=_flag(get("explain", False)))

    def _item_or_404(item_id: int) -> dict[str, Any]:
        item = engine.item(item_id) if 0 < item_id < 2**63 else None
        if item is None:
            raise ApiError(404, f"no item {item_id}")
        return item

    @app.get("/api/items/<int:item_id>")
    def item(item_id: int):
        item = _item_or_404(item_id)
        item.pop("content_hash", None)
        return jsonify(item)

    def _media_file(item: dict[str, Any]) -> Path | None:
        for uri in item["uris"]:
            if "#L" in uri:
                continue
            path = Path(uri)
            if path.is_file():
                return path
        return None

    @app.get("/api/items/<int:item_id>/media")
    def media(item_id: int):
        item = _item_or_404(item_id)
        if item["modality"] == "text":
            text = "\n\n".join(s["text"] for s in item["segments"] if s["modality"] == "text" and s["text"])
            return Response(text, mimetype="text/plain", content_type="text/plain; charset=utf-8")
        path = _media_file(item)
        if path is None:
            raise ApiError(404, f"the file of item {item_id} is no longer available")
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
        return send_file(path, mimetype=mime_type(head, item["modality"]), conditional=True,
                         download_name=f"item-{item_id}{path.suffix.lower()}", max_age=3600)

    @app.get("/api/items/<int:item_id>/thumbnail")
    def thumbnail(item_id: int):
        item = _item_or_404(item_id)
        if item["modality"] != "image":
            raise ApiError(404, f"item {item_id} is {item['modality']}; only images have thumbnails")
        size = _int_field(request.args.get("size", 256), "size", 16, 1024)
        path = _media_file(item)
        if path is None:
            raise ApiError(404, f"the file of item {item_id} is no longer available")
        try:
            img = decode_image(path, DecodeLimits(max_image_pixels=settings.ingest.max_image_pixels))
        except DecodeError:
            raise ApiError(422, f"item {item_id}: the image can no longer be decoded") from None
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        img.thumbnail((size, size))
        if max(img.size) < min(size, 128):
            scale = min(size, 128) / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), 0)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        buf.seek(0)
        return send_file(buf, mimetype="image/png", max_age=3600)

    @app.post("/api/feedback")
    def feedback():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "body: expected a JSON object with user, item and event")
        user = _str_field(body.get("user"), "user", 200)
        if user is None or not user.strip():
            raise ApiError(400, "user: required")
        event = body.get("event")
        if event not in FEEDBACK_EVENTS:
            raise ApiError(400, f"event: expected one of {list(FEEDBACK_EVENTS)}")
        item_id = _int_field(body.get("item"), "item", 1, 2**62)
        if engine.item(item_id) is None:
            raise ApiError(404, f"no item {item_id}")
        try:
            event_id = engine.feedback(user, item_id, event)
        except QueryError as exc:
            raise ApiError(400, str(exc)) from None
        return jsonify(id=event_id, user=user, item=item_id, event=event), 201

    @app.get("/api/users/<user>/feedback")
    def user_history(user: str):
        return jsonify(engine.export_user(user))

    @app.delete("/api/users/<user>/feedback")
    def delete_history(user: str):
        return jsonify(user=user, deleted=engine.delete_user(user))

    return app


__all__ = ["ApiError", "CrossmodalError", "create_app"]
