"""The web page: one HTML document; its script talks to the JSON API."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from crossmodal import __version__

page = Blueprint("page", __name__)


@page.get("/")
def index():
    engine = current_app.extensions["crossmodal.engine"]
    return render_template("index.html", collection=engine.name, version=__version__)
