"""`crossmodal serve`: the Flask app under waitress (a production WSGI server), loaded once,
many threads, clean shutdown on SIGINT and SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from crossmodal.core import Engine, set_search_threads
from crossmodal.server.app import create_app
from crossmodal.settings import Settings

LOG = logging.getLogger("crossmodal.server.run")


class _Stop(Exception):
    """Raised in the main thread by the signal handler to leave the server loop."""


def serve(engine: Engine, settings: Settings, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; then stop accepting, close the engine, return. The process
    is the server's, so it sets the search threads (`[search] faiss_threads`)."""
    from waitress import create_server

    set_search_threads(settings.search.faiss_threads)
    engine.load()
    app = create_app(engine, settings)
    # Bodies up to 4x the upload limit reach Flask, which answers 413 with a JSON error; waitress
    # refuses anything larger itself, from the Content-Length alone.
    server = create_server(app, host=host, port=port, threads=settings.server.threads,
                           max_request_body_size=4 * int(settings.server.max_upload_mb * (1 << 20)) + (1 << 20),
                           ident="crossmodal", clear_untrusted_proxy_headers=True)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{server.effective_port}/"

    def stop(signum: int, frame: object) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready(url)
        server.run()
    except _Stop as why:
        LOG.info("received %s, shutting down", why)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        engine.close()
