"""The web page: one HTML document whose script talks to the JSON API, and, when the server
has a token, the form that trades it for a browser session."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, redirect, render_template, request

from crossmodal import __version__

page = Blueprint("page", __name__)


@page.get("/")
def index():
    engine = current_app.extensions["crossmodal.engine"]
    return render_template("index.html", collection=engine.name, version=__version__, model=engine.model.model_id,
                           description=engine.model_description, search_node=engine.read_only)


@page.post("/login")
def login():
    access = current_app.extensions["crossmodal.access"]
    if access.token_matches(request.form.get("token", "")):
        response = redirect("/", code=303)
        access.set_session_cookie(response, secure=request.is_secure)
        return response
    time.sleep(0.5)  # a guess costs time
    engine = current_app.extensions["crossmodal.engine"]
    return render_template("login.html", collection=engine.name, failed=True), 401
