"""The OpenAPI 3.1 description of the HTTP API (served at /api/openapi.json); a test checks
that it lists exactly the app's routes."""

from __future__ import annotations

from typing import Any

from crossmodal import __version__

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


def openapi_document(max_upload_bytes: int) -> dict[str, Any]:
    item_id = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    user = {"name": "user", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 200}}
    search_fields = {
        "k": {"type": "integer", "minimum": 1, "default": 10},
        "targets": {"description": "image, audio, text (singular or plural, any subset; comma-separated in "
                                   "forms) or joint"},
        "weights": {"description": "one positive weight per part, in the order text, image, audio"},
        "user": {"type": "string", "description": "personalise with this user's feedback"},
        "explain": {"type": "boolean", "description": "include the plan and each result's score parts"},
        "fusion": {"type": "string", "enum": ["early", "late"]},
        "merge": {"type": "string", "enum": ["score", "rrf"]},
        "min_relevance": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "drop results whose calibrated relevance is below this"},
        "collapse": {"type": "boolean", "description": "show near-duplicates (one content in several files) as "
                                                       "one result with its copies listed (default: true)"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "crossmodal", "version": __version__,
                 "description": "Cross-modal search over one collection: text, image and audio queries."},
        "paths": {
            "/api/search": {"post": {
                "summary": "Search by text, an uploaded image and/or an uploaded audio clip",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "text": {"type": "string"},
                        "image": {"type": "string", "format": "binary",
                                  "description": "JPEG, PNG, WebP, GIF, BMP or TIFF"},
                        "audio": {"type": "string", "format": "binary", "description": "WAV, FLAC, OGG or MP3"},
                        **search_fields}}},
                    "application/json": {"schema": {"type": "object", "properties": {
                        "text": {"type": "string"}, **search_fields,
                        "filters": {"$ref": "#/components/schemas/Filters"}}}}},
                    "description": f"at most {max_upload_bytes} bytes in all"},
                "responses": {"200": {"description": "results", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/SearchResponse"}}}},
                    **_errors(400, 413, 415, 422)}}},
            "/api/items/{item_id}": {"get": {
                "summary": "One catalogued item", "parameters": [item_id],
                "responses": {"200": {"description": "the item"}, **_errors(404)}}},
            "/api/items/{item_id}/media": {"get": {
                "summary": "The item's file (images, audio with range requests) or its text",
                "parameters": [item_id],
                "responses": {"200": {"description": "the media"}, **_errors(404)}}},
            "/api/items/{item_id}/thumbnail": {"get": {
                "summary": "A PNG thumbnail of an image item",
                "parameters": [item_id, {"name": "size", "in": "query",
                                         "schema": {"type": "integer", "minimum": 16, "maximum": 1024}}],
                "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}, **_errors(400, 404, 422)}}},
            "/api/recommend": {"get": {
                "summary": "A \"for you\" list for the request's user with no query (another user needs the token)",
                "parameters": [
                    {"name": "user", "in": "query", "schema": {"type": "string", "maxLength": 200},
                     "description": "default: the browser's own user id"},
                    {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 10}},
                    {"name": "targets", "in": "query", "schema": {"type": "string"},
                     "description": "item modalities: image, audio, text (comma-separated; default all)"},
                    {"name": "method", "in": "query", "schema": {
                        "type": "string", "enum": ["hybrid", "content", "collaborative", "popular"],
                        "default": "hybrid"}},
                    {"name": "include_rated", "in": "query", "schema": {"type": "boolean", "default": False},
                     "description": "keep items the user already reacted to"},
                    {"name": "explain", "in": "query", "schema": {"type": "boolean", "default": False},
                     "description": "each result's source scores and why (the liked items it relates to)"}],
                "responses": {"200": {"description": "the list", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/RecommendResponse"}}}}, **_errors(400, 403)}}},
            "/api/items/{item_id}/similar": {"get": {
                "summary": "More like this: the items of every modality nearest to one item, personalised for "
                           "the request's user",
                "parameters": [item_id,
                               {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 10}},
                               {"name": "targets", "in": "query", "schema": {"type": "string"},
                                "description": "image, audio, text (comma-separated) or joint; default all three"},
                               {"name": "user", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                               {"name": "explain", "in": "query", "schema": {"type": "boolean", "default": False}}],
                "responses": {"200": {"description": "results", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/SearchResponse"}}}}, **_errors(400, 403, 404)}}},
            "/api/feedback": {"post": {
                "summary": "Record a like, dislike or click; it shapes the user's next search",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["user", "item", "event"], "properties": {
                        "user": {"type": "string"}, "item": {"type": "integer"},
                        "event": {"type": "string", "enum": ["like", "dislike", "click"]}}}}}},
                "responses": {"201": {"description": "recorded"}, **_errors(400, 404)}}},
            "/api/users/{user}/feedback": {
                "get": {"summary": "Export a user's feedback history", "parameters": [user],
                        "responses": {"200": {"description": "the history"}}},
                "delete": {"summary": "Delete a user's feedback history", "parameters": [user],
                           "responses": {"200": {"description": "how many events were deleted"}}}},
            "/api/me": {"get": {"summary": "The user id this browser acts as (a signed cookie the server set)",
                                "responses": {"200": {"description": "the user"}}}},
            "/api/health": {"get": {"summary": "Liveness and collection summary (with the model and its "
                                               "description: what it knows); 503 with the findings when the "
                                               "collection is damaged",
                                    "responses": {"200": {"description": "ok"},
                                                  "503": {"description": "damaged: status, finding, findings"}}}},
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "ok"}}}},
        },
        "security": [{}, {"bearer": []}],
        "components": {"securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "the server's token, needed when it was started with one, and to act as another user"}},
                       "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Filters": {"type": "object", "properties": {
                "modalities": {"type": "array", "items": {"type": "string", "enum": ["text", "image", "audio"]}},
                "uri_glob": {"type": "string"}, "meta": {"type": "object"},
                "after": {"type": "number"}, "before": {"type": "number"}}},
            "Result": {"type": "object", "properties": {
                "id": {"type": "integer"}, "modality": {"type": "string"}, "uri": {"type": "string"},
                "score": {"type": "number", "description": "what results are ranked by: calibrated relevance, "
                                                           "personalised, in [0, 1] (raw where uncalibrated)"},
                "cosine": {"type": "number", "description": "the raw cosine to the query"},
                "relevance": {"type": ["number", "null"], "description": "calibrated relevance in [0, 1]: "
                              "comparable across modalities; null where the collection cannot calibrate"},
                "start": {"type": ["number", "null"]}, "end": {"type": ["number", "null"]},
                "matched": {"type": "string"}, "text": {"type": ["string", "null"]},
                "label": {"type": ["string", "null"]}, "explanation": {"type": "object"},
                "copies": {"type": "array", "description": "near-duplicates shown with this result, best first",
                           "items": {"type": "object", "properties": {
                               "id": {"type": "integer"}, "uri": {"type": "string"}, "score": {"type": "number"}}}}}},
            "RecommendResponse": {"type": "object", "properties": {
                "user": {"type": "string"}, "method": {"type": "string", "description": "the method asked for"},
                "used": {"type": "string", "description": "what ranked the list (a user with no history: popular)"},
                "history": {"type": "integer", "description": "items the user liked or clicked"},
                "model": {"type": "object", "description": "the collaborative model: on, fitted, users, items"},
                "widened": {"type": "integer", "description": "results only the related-items graph ranked"},
                "results": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "modality": {"type": "string"}, "uri": {"type": "string"},
                    "score": {"type": "number", "description": "in [0, 1]"}, "label": {"type": ["string", "null"]},
                    "text": {"type": ["string", "null"]},
                    "sources": {"type": "object", "description": "content, collaborative, popularity, the "
                                                                "collaborative weight and graph (explain)"},
                    "explanation": {"type": "array", "description": "why (explain), strongest first: kind "
                                    "(liked, co_liked, meta, file, popular), the liked item (id, name) and text",
                                    "items": {"type": "object"}}}}}}},
            "SearchResponse": {"type": "object", "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
                "best_relevance": {"type": ["number", "null"],
                                   "description": "the highest calibrated relevance of any candidate"},
                "weak": {"type": "boolean", "description": "even the best match is weak"},
                "notice": {"type": ["string", "null"],
                           "description": "what to tell the user when even the best match is weak"},
                "plan": {"type": "object"}}},
        }},
    }
