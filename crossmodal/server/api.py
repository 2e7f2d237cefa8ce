"""The JSON API under /api: parse the request, call the engine, present the answer.

Validation lives in the core (`crossmodal.core.query_from_fields`, `Engine.feedback`, ...);
errors are crossmodal errors that `app.py` maps to statuses. A request acts as the user its
browser cookie names (`access.py`); naming another user, or seeing the server's full paths,
needs the token in the Authorization header.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file
from werkzeug.wsgi import wrap_file

from crossmodal.core import Engine, query_from_fields
from crossmodal.errors import AccessError, InputError, NotFoundError, TooLargeError
from crossmodal.server.access import Access
from crossmodal.server.openapi import openapi_document
from crossmodal.server.uploads import UploadFolder
from crossmodal.settings import Settings

api = Blueprint("api", __name__, url_prefix="/api")
FEEDBACK_FIELDS = ("user", "item", "event")


def _engine() -> Engine:
    return current_app.extensions["crossmodal.engine"]


def _settings() -> Settings:
    return current_app.extensions["crossmodal.settings"]


def _access() -> Access:
    return current_app.extensions["crossmodal.access"]


def _nesting(raw: bytes, limit: int) -> int | None:
    """The first depth over ``limit`` that the JSON text reaches, or None; strings are skipped,
    so brackets inside them do not count. Runs before parsing, which would recurse that deep."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return depth
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return None


def _json_object(what: str) -> dict[str, Any]:
    """The request's JSON object, within `[server] max_json_kb` and `max_json_depth`."""
    if not request.is_json:  # a cross-site page cannot send this type without the server's consent
        raise InputError(f"body: expected a JSON object with {what} (Content-Type: application/json)")
    limits = _settings().server
    max_bytes = int(limits.max_json_kb * 1024)
    if (request.content_length or 0) > max_bytes:
        raise TooLargeError(f"body: a JSON body may hold at most {limits.max_json_kb:g} KB")
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise TooLargeError(f"body: a JSON body may hold at most {limits.max_json_kb:g} KB")
    if _nesting(raw, limits.max_json_depth) is not None:
        raise InputError(f"body: nested deeper than {limits.max_json_depth} levels")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise InputError(f"body: expected a JSON object with {what}")
    return body


def _acting_user(named: Any) -> str | None:
    """The user a request acts as: its browser's own id, or the one it names when that is the
    same id or the request carries the token."""
    if named is None or named == "":
        return g.user
    if named != g.user and not _access().bearer(request):
        raise AccessError("user: acting as another user needs the server's token (Authorization: Bearer TOKEN)")
    return named


def _shown_uri(uri: str, roots) -> str:
    return uri if _access().bearer(request) else _engine().relative_uri(uri, roots)


@api.get("/health")
def health():
    body = _engine().health()
    return jsonify(body), 200 if body["status"] == "ok" else 503


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app.config["MAX_CONTENT_LENGTH"]))


@api.get("/me")
def me():
    return jsonify(user=g.user)


@api.post("/search")
def search():
    max_k = _settings().server.max_k
    with UploadFolder() as folder:
        if request.is_json:
            fields = _json_object("a query")
            if "image" in fields or "audio" in fields:
                raise InputError("body: image and audio are uploads; send them as multipart/form-data")
        else:
            fields = {k: v for k, v in request.form.items()}
            for field in ("image", "audio"):
                fields.pop(field, None)
                upload = request.files.get(field)
                if upload is not None and upload.filename:
                    fields[field] = folder.save(field, upload.stream, current_app.config["MAX_CONTENT_LENGTH"])
        fields["user"] = _acting_user(fields.get("user"))
        query = query_from_fields(fields, max_k=max_k)
        response = _engine().search(query)
    roots = _engine().roots()
    response.results = [replace(r, uri=_shown_uri(r.uri, roots),
                                copies=[{**c, "uri": _shown_uri(c["uri"], roots)} for c in r.copies])
                        for r in response.results]
    return jsonify(response.as_dict(explain=query.explain))


def _item_id(raw: int) -> int:
    if not 0 < raw < 2**63:
        raise NotFoundError(f"no item {raw}")
    return raw


@api.get("/items/<int:item_id>")
def item(item_id: int):
    found = _engine().item(_item_id(item_id))
    if found is None:
        raise NotFoundError(f"no item {item_id}")
    found.pop("content_hash", None)
    roots = _engine().roots()
    found["uris"] = [_shown_uri(uri, roots) for uri in found["uris"]]
    return jsonify(found)


@api.get("/items/<int:item_id>/media")
def media(item_id: int):
    found = _engine().media(_item_id(item_id))
    if found.text is not None:
        return Response(found.text, content_type=found.mime_type)
    handle, st = found.open()  # checked against the collection's roots again, as it is opened
    response = Response(wrap_file(request.environ, handle), mimetype=found.mime_type, direct_passthrough=True)
    response.content_length = st.st_size
    response.last_modified = int(st.st_mtime)
    response.set_etag(f"{st.st_mtime_ns}-{st.st_size}-{item_id}")
    response.cache_control.max_age = 3600
    response.headers["Content-Disposition"] = f'inline; filename="item-{item_id}{found.path.suffix.lower()}"'
    return response.make_conditional(request, accept_ranges=True, complete_length=st.st_size)


@api.get("/items/<int:item_id>/thumbnail")
def thumbnail(item_id: int):
    png = _engine().thumbnail(_item_id(item_id), request.args.get("size", "256"))
    return send_file(io.BytesIO(png), mimetype="image/png", max_age=3600)


@api.post("/feedback")
def feedback():
    body = _json_object("item and event")
    unknown = set(body) - set(FEEDBACK_FIELDS)
    if unknown:
        raise InputError(f"body: unknown field(s) {sorted(map(str, unknown))[:10]}; use {list(FEEDBACK_FIELDS)}")
    user = _acting_user(body.get("user"))
    event_id = _engine().feedback(user, body.get("item"), body.get("event"))
    return jsonify(id=event_id, user=user, item=int(body["item"]), event=body["event"]), 201


def _own_history(user: str) -> str:
    if user != g.user and not _access().bearer(request):
        raise AccessError("user: another user's history needs the server's token (Authorization: Bearer TOKEN)")
    return user


@api.get("/users/<user>/feedback")
def user_history(user: str):
    return jsonify(_engine().export_user(_own_history(user)))


@api.delete("/users/<user>/feedback")
def delete_history(user: str):
    return jsonify(user=user, deleted=_engine().delete_user(_own_history(user)))


@api.get("/recommend")
def recommend():
    """A "for you" list for the request's user (or the one named, with the token)."""
    args = request.args
    response = _engine().recommend(
        _acting_user(args.get("user")), args.get("k", "10"), args.get("targets") or args.get("target"),
        include_rated=args.get("include_rated", "false"), explain=args.get("explain", "false"),
        method=args.get("method", "hybrid"), max_k=_settings().server.max_k)
    roots = _engine().roots()
    response.results = [replace(r, uri=_shown_uri(r.uri, roots)) for r in response.results]
    return jsonify(response.as_dict())


@api.get("/items/<int:item_id>/similar")
def similar(item_id: int):
    """"More like this": the nearest items of every modality, personalised for the request's user."""
    args = request.args
    explain = args.get("explain", "false")
    response = _engine().similar(_item_id(item_id), args.get("k", "10"), args.get("targets") or args.get("target"),
                                 user=_acting_user(args.get("user")), explain=explain,
                                 max_k=_settings().server.max_k)
    roots = _engine().roots()
    response.results = [replace(r, uri=_shown_uri(r.uri, roots),
                                copies=[{**c, "uri": _shown_uri(c["uri"], roots)} for c in r.copies])
                        for r in response.results]
    return jsonify(response.as_dict(explain=explain.strip().lower() in ("true", "1", "yes", "on")))
