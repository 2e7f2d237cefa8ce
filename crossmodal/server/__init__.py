"""The HTTP server: a Flask app factory with the JSON API and the web page, served by waitress.

`create_app(engine)` builds the app over one `crossmodal.core.Engine`; `serve` runs it. The
page's templates and static files live in the top-level ``web/`` folder (installed as
``crossmodal.web``).
"""

from crossmodal.server.app import create_app
from crossmodal.server.run import serve

__all__ = ["create_app", "serve"]
