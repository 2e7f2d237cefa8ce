"""The commands that work on a collection: parse the options into a call on the core API, and
present what it returns. Nothing here validates a query or touches storage itself."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from crossmodal.cli.output import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    emit_json,
    print_index_report,
    print_plan,
    print_results,
    program,
    report_skipped,
    warn,
)
from crossmodal.core import Engine, query_from_fields, set_search_threads
from crossmodal.errors import InputError, ModelChangedError
from crossmodal.settings import Settings, load_settings

LOG = logging.getLogger("crossmodal")


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings file, with the options this command was given applied on top."""
    settings = load_settings(args.settings)
    token = getattr(args, "milvus_token", None)
    uri = getattr(args, "milvus_uri", None)
    backend = getattr(args, "backend", None) or ("milvus" if uri and not hasattr(args, "to") else None)
    return settings.updated(index={"kind": getattr(args, "kind", None), "backend": backend,
                                   "milvus_uri": uri, "milvus_token": token},
                            ingest={"executor": getattr(args, "executor", None),
                                    "cluster": getattr(args, "cluster", None)},
                            server={"token": getattr(args, "token", None),
                                    "allowed_hosts": getattr(args, "allow_host", None)})


def open_engine(args: argparse.Namespace, **kwargs) -> Engine:
    if getattr(args, "replica", None):
        if not args.milvus_uri:
            raise InputError("--replica: give the collection's Milvus server with --milvus-uri")
        return Engine.open_replica(args.milvus_uri, args.replica, token=args.milvus_token, settings=settings_of(args),
                                   model=getattr(args, "model", None))
    engine = Engine.open(args.collection, root=args.root, settings=settings_of(args),
                         model=getattr(args, "model", None), **kwargs)
    if engine.stale and not kwargs.get("create"):
        LOG.warning("collection %s has changes its indexes do not hold yet (an interrupted run?); "
                    "run `crossmodal index` again to publish them", engine.name)
    return engine


def cmd_index(args: argparse.Namespace) -> int:
    with open_engine(args, create=True, rebuild=args.rebuild) as engine:
        report = engine.index(args.paths, prune=args.prune, progress=not args.quiet, wait=args.wait,
                              follow_symlinks=args.follow_symlinks)
        folder = engine.folder
        backend = engine.collection.manifest.get("backend", {})
    if args.json:
        emit_json(report.as_dict())
    else:
        print_index_report(report, folder)
        if "://" in str(backend.get("uri", "")):
            print(f"  search nodes on any machine: {program()} serve --replica {backend['prefix']} "
                  f"--milvus-uri {backend['uri']}")
    return report_skipped([(s.source, s.reason) for s in report.skipped])


def query_fields(args: argparse.Namespace) -> dict:
    """The search options as the raw fields `query_from_fields` validates."""
    return {"text": args.text, "image": args.image, "audio": args.audio, "k": args.k,
            "weights": getattr(args, "weights", None), "targets": getattr(args, "target", None),
            "user": getattr(args, "user", None), "fusion": getattr(args, "fusion", None),
            "merge": getattr(args, "merge", None), "explain": getattr(args, "explain", False),
            "min_relevance": getattr(args, "min_relevance", None), "collapse": getattr(args, "collapse", None),
            "filters": {"modalities": getattr(args, "only", None) or [], "uri_glob": getattr(args, "uri_glob", None),
                        "meta": dict(getattr(args, "meta", None) or []), "after": getattr(args, "after", None),
                        "before": getattr(args, "before", None)}}


def cmd_search(args: argparse.Namespace) -> int:
    query = query_from_fields(query_fields(args))
    with open_engine(args) as engine:
        set_search_threads(engine.settings.search.faiss_threads)
        response = engine.search(query)
    if args.json:
        emit_json(response.as_dict(explain=query.explain))
        return EXIT_OK
    if query.explain:
        print_plan(response.plan)
    print_results(response.results, response.notice, response.plan.best_relevance)
    return EXIT_OK


def cmd_feedback(args: argparse.Namespace) -> int:
    event = "like" if args.like else "dislike" if args.dislike else "click"
    with open_engine(args) as engine:
        event_id = engine.feedback(args.user, args.item, event)
    if args.json:
        emit_json({"id": event_id, "user": args.user, "item": args.item, "event": event})
    else:
        print(f"recorded {event} of item {args.item} by {args.user}")
    return EXIT_OK


def cmd_user(args: argparse.Namespace) -> int:
    if args.name and args.user and args.name != args.user:
        warn(f"error: two different users given: {args.name!r} and --user {args.user!r}")
        return EXIT_USAGE
    user = args.user or args.name
    if not user:
        warn("error: give the user: crossmodal user --user NAME")
        return EXIT_USAGE
    with open_engine(args) as engine:
        history = engine.export_user(user)
        deleted = engine.delete_user(user) if args.delete else None
    if args.json:
        emit_json({**history, **({"deleted": deleted} if deleted is not None else {})})
    else:
        for e in history["events"]:
            print(f"{e['ts']:.0f}  {e['event']:<8} item {e['item']}")
        print(f"{len(history['events'])} event(s) for {user}" + (f"; {deleted} deleted" if args.delete else ""))
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    ids = [*args.ids, *args.item]
    if not ids and not args.uri:
        warn("error: give item ids (--item ID) or paths (--uri PATH)")
        return EXIT_USAGE
    with open_engine(args) as engine:
        report = engine.remove(ids, args.uri, wait=args.wait)
    if args.json:
        emit_json(report.as_dict())
    else:
        print(f"removed {report.removed}")
    for m in report.not_found:
        warn(f"not in the collection: {m}")
    return EXIT_OK if not report.not_found else EXIT_ERROR


def cmd_migrate(args: argparse.Namespace) -> int:
    with open_engine(args) as engine:
        moved = engine.migrate(args.to, args.milvus_uri or "", wait=args.wait)
    if args.json:
        emit_json(moved)
        return EXIT_OK
    after = moved["backend"]
    where = f" at {after['uri']}" if after.get("uri") else ""
    print(f"collection {moved['collection']}: indexes moved from {moved['from']['name']} to {after['name']}{where}, "
          f"copied from the catalog (nothing re-embedded)")
    for name, entry in moved["indexes"].items():
        print(f"  {name:<6} {entry['kind']:<9} {entry['ntotal']:>8} vectors")
    return EXIT_OK


def serve_engine(engine: Engine, args: argparse.Namespace) -> int:
    """Serve ``engine`` until Ctrl+C or SIGTERM (which closes it)."""
    from crossmodal.server import serve

    def ready(url: str) -> None:
        print(f"crossmodal: serving collection {engine.name} at {url}  (Ctrl+C to stop)", flush=True,
              file=sys.stderr if args.json else sys.stdout)

    serve(engine, engine.settings, host=args.host, port=args.port, on_ready=ready, insecure=args.insecure_no_token)
    print("crossmodal: stopped", file=sys.stderr)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    return serve_engine(open_engine(args), args)


def cmd_demo(args: argparse.Namespace) -> int:
    from crossmodal.demo.showcase import run_demo

    engine = open_engine(args, create=True)
    try:
        engine.load()  # checks the model against the collection
    except ModelChangedError:  # the demo collection is made from bundled files: make it again
        engine.close()
        LOG.warning("collection %s was built with other weights than its model now loads (an upgrade?); "
                    "rebuilding it from the demo corpus (its likes and history go with it)", args.collection)
        engine = open_engine(args, create=True, rebuild=True)
    except BaseException:
        engine.close()
        raise
    try:
        report, results = run_demo(engine, k=args.k, text=args.text, image=args.image, audio=args.audio,
                                   progress=not args.quiet)
    except BaseException:
        engine.close()
        raise
    if args.json:
        emit_json({"collection": str(engine.folder), "index": report.as_dict(), "queries": [
            {"modality": r.modality, "query": r.query,
             "results": {t: [h.as_dict() for h in hits] for t, hits in r.hits.items()}} for r in results]})
    else:
        print(f"demo collection {engine.folder}: {report.counts.get('items', 0)} items "
              f"({report.added} added now, {report.unchanged} already indexed)\n")
        for r in results:
            print(f"{r.modality} query {r.query}")
            for target, hits in r.hits.items():
                for rank, h in enumerate(hits, 1):
                    label = h.label or "-"
                    print(f"  -> {target:<5} #{rank}  {h.score:6.3f}  label {label:<3} "
                          f"{h.text and repr(' '.join(h.text.split())[:70]) if h.modality == 'text' else h.uri}")
            print()
        hint = f"{program()} search --collection {shlex.quote(args.collection)}"
        if args.root != Path("indexes"):
            hint += f" --root {shlex.quote(str(args.root))}"
        print(f"search it yourself: {hint} --text 'a handwritten four'")
    if args.no_serve:
        engine.close()
        return EXIT_OK
    if not args.json:
        print()
    return serve_engine(engine, args)
