"""`crossmodal serve`: the Flask app under waitress (a production WSGI server), loaded once,
many threads, clean shutdown on SIGINT and SIGTERM.

Slow clients cost a connection, not a thread: waitress reads each request whole before a
thread sees it. So the defence against a few hundred half-sent requests is a connection limit
well above them (with the file descriptors it needs) and a short idle timeout that closes them
(`[server] connection_limit`, `channel_timeout`, `cleanup_interval`). Under waitress's default
limit of 100, every later connection, `/api/health` included, waited minutes for a free slot.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from crossmodal.core import Engine, set_model_threads, set_search_threads
from crossmodal.errors import ConfigError
from crossmodal.server.access import is_loopback
from crossmodal.server.app import create_app, server_token
from crossmodal.settings import Settings

LOG = logging.getLogger("crossmodal.server.run")

FDS_PER_CONNECTION = 2
"""A connection's socket, and the temporary file a large request body or response spools to."""
FDS_RESERVED = 64
"""Descriptors kept for everything else: the catalog, index files, uploads, media sent."""


def fit_connection_limit(wanted: int) -> int:
    """The connection limit this process's file descriptors allow: the soft RLIMIT_NOFILE is
    raised toward the hard limit to fit ``wanted`` connections (a process-wide change, made by
    the server's own process), and the limit lowered, with a warning, where it cannot be."""
    try:
        import resource
    except ImportError:  # no rlimits on this platform: trust the setting
        return wanted
    need = wanted * FDS_PER_CONNECTION + FDS_RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            LOG.warning("cannot raise the open-file limit from %s to %s: %s", soft, target, exc)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    fits = max(1, (soft - FDS_RESERVED) // FDS_PER_CONNECTION)
    LOG.warning("[server] connection_limit %d needs %d open files but this process may open %d; serving "
                "at most %d connections (raise the hard limit, ulimit -Hn, to allow more)", wanted, need, soft, fits)
    return fits


class _Stop(SystemExit):
    """Raised in the main thread by the signal handler to leave the server loop. A SystemExit,
    because waitress passes those on from a connection's handler where it swallows (and logs)
    any other exception: a signal that lands while a connection is being closed must still stop
    the server."""


def serve(engine: Engine, settings: Settings, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None, insecure: bool = False) -> None:
    """Serve until SIGINT or SIGTERM; then stop accepting, close the engine, return. The process
    is the server's, so it sets the search threads (`[search] faiss_threads`)."""
    from waitress import create_server

    # Waitress warns once per request that waits for a thread ("Task queue depth"): under load that
    # floods the log (and stalls a server whose stderr is a pipe nobody reads) with no news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    if not is_loopback(host) and not server_token(settings) and not insecure:
        raise ConfigError(f"serving on {host} would let anyone who can reach it read and change this collection; "
                          f"give a token (--token, CROSSMODAL_TOKEN or [server] token), or pass --insecure-no-token "
                          f"if something else guards the address")
    set_search_threads(settings.search.faiss_threads)
    set_model_threads(settings.search.torch_threads)
    engine.load(wait=False)  # text queries answer at once; the model loads meanwhile where that is possible
    app = create_app(engine, settings, host=host)
    # Bodies up to 4x the upload limit reach Flask, which answers 413 with a JSON error; waitress
    # refuses anything larger itself, from the Content-Length alone.
    limits = settings.server
    server = create_server(app, host=host, port=port, threads=limits.threads,
                           max_request_body_size=4 * int(limits.max_upload_mb * (1 << 20)) + (1 << 20),
                           ident="crossmodal", clear_untrusted_proxy_headers=True,
                           connection_limit=fit_connection_limit(limits.connection_limit),
                           channel_timeout=limits.channel_timeout, cleanup_interval=limits.cleanup_interval,
                           max_request_header_size=limits.max_header_kb << 10,
                           asyncore_use_poll=True)  # select() fails past descriptor 1024
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
