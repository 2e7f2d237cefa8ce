"""The JSON API under /api: parse the request, call the engine, present the answer.

Validation lives in the core (`crossmodal.core.query_from_fields`, `Engine.feedback`, ...);
errors are crossmodal errors that `app.py` maps to statuses.
"""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from crossmodal.core import Engine, query_from_fields
from crossmodal.errors import InputError, NotFoundError
from crossmodal.server.openapi import openapi_document
from crossmodal.server.uploads import UploadFolder
from crossmodal.settings import Settings

api = Blueprint("api", __name__, url_prefix="/api")
FEEDBACK_FIELDS = ("user", "item", "event")


def _engine() -> Engine:
    return current_app.extensions["crossmodal.engine"]


def _settings() -> Settings:
    return current_app.extensions["crossmodal.settings"]


def _json_object(what: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError(f"body: expected a JSON object with {what}")
    return body


@api.get("/health")
def health():
    return jsonify(_engine().health())


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app.config["MAX_CONTENT_LENGTH"]))


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
        query = query_from_fields(fields, max_k=max_k)
        response = _engine().search(query)
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
    return jsonify(found)


@api.get("/items/<int:item_id>/media")
def media(item_id: int):
    found = _engine().media(_item_id(item_id))
    if found.text is not None:
        return Response(found.text, content_type=found.mime_type)
    assert found.path is not None
    return send_file(found.path, mimetype=found.mime_type, conditional=True,
                     download_name=f"item-{item_id}{found.path.suffix.lower()}", max_age=3600)


@api.get("/items/<int:item_id>/thumbnail")
def thumbnail(item_id: int):
    png = _engine().thumbnail(_item_id(item_id), request.args.get("size", "256"))
    return send_file(io.BytesIO(png), mimetype="image/png", max_age=3600)


@api.post("/feedback")
def feedback():
    body = _json_object("user, item and event")
    unknown = set(body) - set(FEEDBACK_FIELDS)
    if unknown:
        raise InputError(f"body: unknown field(s) {sorted(map(str, unknown))[:10]}; use {list(FEEDBACK_FIELDS)}")
    if body.get("user") in (None, ""):
        raise InputError("user: required")
    event_id = _engine().feedback(body.get("user"), body.get("item"), body.get("event"))
    return jsonify(id=event_id, user=body["user"], item=int(body["item"]), event=body["event"]), 201


@api.get("/users/<user>/feedback")
def user_history(user: str):
    return jsonify(_engine().export_user(user))


@api.delete("/users/<user>/feedback")
def delete_history(user: str):
    return jsonify(user=user, deleted=_engine().delete_user(user))
