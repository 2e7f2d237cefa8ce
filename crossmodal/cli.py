"""The `crossmodal` command line. Only this layer prints or exits.

Exit codes: 0 success; 1 error (message on stderr); 2 usage error; 3 finished, but some
inputs were skipped (each reported on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossmodal import __version__
from crossmodal.errors import CrossmodalError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3
LOG = logging.getLogger("crossmodal")


def _emit_json(obj: Any) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    json.dump(clean(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def _report_skipped(skipped: list[tuple[str, str]]) -> int:
    for source, reason in skipped:
        print(f"crossmodal: skipped {source}: {reason}", file=sys.stderr)
    if skipped:
        print(f"crossmodal: {len(skipped)} input(s) skipped", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_OK


def _parse_sizes(text: str) -> dict[str, int]:
    sizes = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in ("text", "image", "audio") or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected modality=N pairs such as image=192,audio=96; got {part!r}")
        sizes[key] = int(value)
    return sizes


def _parse_modalities(text: str) -> list[str]:
    items = [t for t in text.split(",") if t]
    bad = [t for t in items if t not in ("text", "image", "audio")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown modality {bad[0]!r}; use text, image, audio")
    return items


def _parse_directions(text: str) -> list[str]:
    from crossmodal.evaluation.metrics import ALL_DIRECTIONS

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALL_DIRECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown direction {bad[0] if bad else text!r}; use query->gallery names such as "
            f"{', '.join(ALL_DIRECTIONS[:3])} (quote them in a shell: '->' is a redirect)")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--config", default="starter-digits",
                   help="aligner architecture: shipped config name or JSON path (default: starter-digits)")
    g.add_argument("--init", metavar="CHECKPOINT",
                   help="start from a trained aligner instead of a fresh config (fine-tuning)")
    g.add_argument("--epochs", type=_positive_int, default=12)
    g.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                   help="default: one pass over the largest modality")
    g.add_argument("--batch-sizes", type=_parse_sizes, default=None, metavar="M=N,...",
                   help="per-modality batch sizes, e.g. text=64,image=192,audio=96")
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--warmup-steps", type=int, default=100)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--freeze-backbones", type=_parse_modalities, default=[], metavar="M,...",
                   help="modalities whose backbone is frozen; their features are computed once and cached")
    g.add_argument("--intra-modal-weight", type=float, default=0.5)
    g.add_argument("--no-augment", action="store_true", help="train without data augmentation")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")


def _train_cfg(args: argparse.Namespace):
    from crossmodal.training.trainer import TrainCfg

    cfg = TrainCfg(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, lr=args.lr,
                   weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, seed=args.seed,
                   freeze_backbones=args.freeze_backbones, intra_modal_weight=args.intra_modal_weight,
                   augment=not args.no_augment, device=args.device, threads=args.threads,
                   progress=not args.quiet)
    if args.batch_sizes:
        cfg.batch_sizes.update(args.batch_sizes)
    return cfg


def _initial_aligner(args: argparse.Namespace):
    from crossmodal.aligner import create_aligner, load_aligner

    return load_aligner(args.init) if args.init else create_aligner(args.config)


def cmd_train(args: argparse.Namespace) -> int:
    from crossmodal.evaluation.manifest_eval import holdout_split
    from crossmodal.ingest.item_list import read_item_list
    from crossmodal.training.data import IdTable, load_dataset
    from crossmodal.training.trainer import seed_everything, train

    cfg = _train_cfg(args)
    seed_everything(args.seed)
    items = read_item_list(args.manifest)
    if args.val:
        train_items, val_items = items, read_item_list(args.val)
    else:
        train_items, val_items = holdout_split(items, args.val_fraction, args.seed)
    aligner = _initial_aligner(args)
    labels = IdTable()
    train_data = load_dataset(train_items, aligner, labels, progress=not args.quiet)
    val_data = load_dataset(val_items, aligner, labels, progress=not args.quiet) if val_items else None
    skipped = train_data.skipped + (val_data.skipped if val_data else [])
    trained_on = {"manifest": str(Path(args.manifest).resolve()), "validation": str(args.val or
                  f"{args.val_fraction:.0%} of the training manifest")}
    result = train(aligner, train_data, val_data, cfg, args.out, trained_on)
    summary = {"checkpoint": str(result.checkpoint_dir), "best_epoch": result.best_epoch,
               "best_score": result.best_score, "validation": result.best_metrics,
               "counts": train_data.counts(), "skipped": len(skipped)}
    if args.json:
        _emit_json(summary)
    else:
        print(f"best epoch {result.best_epoch} (validation mean cross-modal mAP {result.best_score:.4f})")
        print(f"checkpoint written to {result.checkpoint_dir}")
        _print_metrics(result.best_metrics)
    return _report_skipped(skipped)


def _print_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    print(f"{'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'mAP':>8}{'queries':>9}")
    for direction, m in metrics.items():
        print(f"{direction:<16}{m['recall@1']:>8.4f}{m['recall@5']:>8.4f}{m['recall@10']:>8.4f}"
              f"{m['mAP']:>8.4f}{m['queries']:>9}")


def cmd_eval(args: argparse.Namespace) -> int:
    from crossmodal.ingest.item_list import read_item_list

    if args.folds:
        from crossmodal.aligner.registry import read_aligner_config
        from crossmodal.evaluation.manifest_eval import cross_validate

        summary = cross_validate(read_item_list(args.manifest), read_aligner_config(args.config), _train_cfg(args),
                                 args.folds, args.out, progress=not args.quiet)
        if args.json:
            _emit_json(summary)
        else:
            print(f"{args.folds}-fold cross-validation (mean ± std)")
            for direction, m in summary.items():
                cells = "  ".join(f"{k} {v['mean']:.4f}±{v['std']:.4f}" for k, v in m.items())
                print(f"{direction:<16}{cells}")
        return EXIT_OK

    from crossmodal.aligner import load_aligner
    from crossmodal.evaluation.manifest_eval import evaluate_manifest
    from crossmodal.training.trainer import resolve_device

    aligner = load_aligner(args.model, resolve_device(args.device))
    LOG.info("evaluating %s on %s", aligner.model_id, args.manifest)
    report = evaluate_manifest(args.manifest, aligner, args.directions, progress=not args.quiet)
    print(f"crossmodal: model {aligner.model_id}; items {report.counts}", file=sys.stderr)
    if args.json:
        _emit_json(report.metrics)
    else:
        _print_metrics(report.metrics)
    return _report_skipped(report.skipped)


def cmd_models(args: argparse.Namespace) -> int:
    from crossmodal.aligner import list_aligners

    listing: dict[str, Any] = list_aligners()
    if args.open_clip:
        from crossmodal.aligner.open_clip_source import list_open_clip_models

        listing["open_clip"] = list_open_clip_models()
    if args.json:
        _emit_json(listing)
    else:
        for kind, names in listing.items():
            print(f"{kind}:")
            for name in names:
                print(f"  {name}")
    return EXIT_OK


def _what(result) -> str:
    """A result as a person reads it: the text itself for text, else where the file is."""
    if result.modality == "text" and result.text:
        snippet = " ".join(result.text.split())
        return repr(snippet if len(snippet) <= 70 else snippet[:67] + "...")
    return result.uri


def cmd_demo(args: argparse.Namespace) -> int:
    from crossmodal.demo.showcase import run_demo
    from crossmodal.settings import load_settings

    folder = _collection_folder(args)
    report, results = run_demo(folder, load_settings(args.settings), k=args.k, text=args.text, image=args.image,
                               audio=args.audio, model=args.model, progress=not args.quiet)
    if args.json:
        _emit_json({"collection": str(folder), "index": report.as_dict(), "queries": [
            {"modality": r.modality, "query": r.query,
             "results": {t: [h.as_dict() for h in hits] for t, hits in r.hits.items()}} for r in results]})
        return EXIT_OK if args.no_serve else _serve(args, folder)
    print(f"demo collection {folder}: {report.counts.get('items', 0)} items "
          f"({report.added} added now, {report.unchanged} already indexed)\n")
    for r in results:
        print(f"{r.modality} query {r.query}")
        for target, hits in r.hits.items():
            for rank, h in enumerate(hits, 1):
                print(f"  -> {target:<5} #{rank}  {h.score:6.3f}  label {h.label or '-':<3} {_what(h)}")
        print()
    print(f"search it yourself: crossmodal search --index {args.index} --text 'a handwritten four'")
    if args.no_serve:
        return EXIT_OK
    print()
    return _serve(args, folder)


def _collection_folder(args: argparse.Namespace) -> Path:
    from crossmodal.index.collection import collection_folder

    return collection_folder(args.index, args.index_root)


def cmd_index(args: argparse.Namespace) -> int:
    from crossmodal.index.build import index_paths
    from crossmodal.settings import load_settings

    settings = _with_backend_options(load_settings(args.settings), args)
    if args.kind:
        from dataclasses import replace

        settings = replace(settings, index=replace(settings.index, kind=args.kind))
    folder = _collection_folder(args)
    report = index_paths(folder, args.paths, settings, model_ref=args.model, prune=args.prune,
                         rebuild=args.rebuild, progress=not args.quiet)
    if args.json:
        _emit_json(report.as_dict())
    else:
        print(f"collection {report.collection} at {folder}: {report.added} added, {report.updated} updated, "
              f"{report.duplicates} duplicate(s) linked, {report.unchanged} unchanged, {report.removed} removed, "
              f"{len(report.skipped)} skipped")
        for name, entry in report.indexes.items():
            recall = entry.get("recall@10")
            extra = f", recall@10 vs exact {recall:.3f}" if recall is not None else ""
            print(f"  {name:<6} {entry['kind']:<9} {entry['ntotal']:>8} vectors{extra}")
    return _report_skipped([(s.source, s.reason) for s in report.skipped])


def _with_backend_options(settings, args: argparse.Namespace):
    """Settings with --backend, --milvus-uri and --milvus-token applied (a URI implies milvus)."""
    from dataclasses import replace

    changes = {}
    if getattr(args, "backend", None):
        changes["backend"] = args.backend
    if getattr(args, "milvus_uri", None):
        changes["milvus_uri"] = args.milvus_uri
        changes.setdefault("backend", "milvus")
    if getattr(args, "milvus_token", None):
        changes["milvus_token"] = args.milvus_token
    return replace(settings, index=replace(settings.index, **changes)) if changes else settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from crossmodal.index.collection import Collection, backend_spec, new_backend_spec
    from crossmodal.settings import load_settings

    settings = _with_backend_options(load_settings(args.settings), args)
    folder = _collection_folder(args)
    with Collection.open(folder, milvus_token=settings.index.milvus_token or None) as coll, coll.writer_lock():
        before = backend_spec(coll.manifest)
        spec = new_backend_spec(args.to, coll.name, args.milvus_uri or "")
        manifest = coll.migrate(spec, settings.index)
    after = manifest["backend"]
    if args.json:
        _emit_json({"collection": coll.name, "from": before, "backend": after, "indexes": manifest["indexes"]})
        return EXIT_OK
    where = f" at {after['uri']}" if after.get("uri") else ""
    print(f"collection {coll.name}: indexes moved from {before['name']} to {after['name']}{where}, "
          f"copied from the catalog (nothing re-embedded)")
    for name, entry in manifest["indexes"].items():
        print(f"  {name:<6} {entry['kind']:<9} {entry['ntotal']:>8} vectors")
    return EXIT_OK


def _parse_time(text: str) -> float:
    """Seconds since the epoch, or an ISO date/time such as 2026-01-31 or 2026-01-31T12:00."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date/time or epoch seconds, got {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _parse_meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _query_from_args(args: argparse.Namespace):
    from crossmodal.query import Filters, Query, QueryError, QueryPart, parse_targets, parse_weights

    parts = [("text", args.text), ("image", args.image), ("audio", args.audio)]
    parts = [(m, v) for m, v in parts if v is not None]
    if not parts:
        raise QueryError("give at least one of --text, --image, --audio")
    weights = parse_weights(args.weights, len(parts))
    query_parts = tuple(QueryPart(m, text=v, weight=w) if m == "text" else QueryPart(m, path=Path(v), weight=w)
                        for (m, v), w in zip(parts, weights))
    filters = Filters(modalities=tuple(args.only or ()), uri_glob=args.uri_glob, meta=dict(args.meta or []),
                      after=args.after, before=args.before)
    return Query(query_parts, targets=parse_targets(args.target), k=args.k, filters=filters, user=args.user,
                 fusion=args.fusion, late_merge=args.merge, explain=args.explain)


def _open_engine(args: argparse.Namespace):
    from crossmodal.engine import Engine
    from crossmodal.settings import load_settings

    engine = Engine.open(_collection_folder(args), settings=load_settings(args.settings),
                         model=getattr(args, "model", None))
    if engine.stale:
        LOG.warning("collection %s has changes its index files do not hold yet (an interrupted run?); "
                    "run `crossmodal index` again to publish them", engine.collection.name)
    return engine


def cmd_search(args: argparse.Namespace) -> int:
    query = _query_from_args(args)
    with _open_engine(args) as engine:
        response = engine.search(query)
    if args.json:
        _emit_json(response.as_dict(explain=args.explain))
        return EXIT_OK
    if args.explain:
        plan = response.plan
        print(f"plan: {len(plan.parts)} part(s) " + ", ".join(
            f"{p['modality']} {p['query']} (weight {p['weight']:.2f})" for p in plan.parts))
        print(f"      targets {', '.join(f'{t} [{k}]' for t, k in plan.indexes.items())}; fetch {plan.fetch} per "
              f"target; fusion {plan.fusion}{f' ({plan.late_merge})' if plan.late_merge else ''}")
        if plan.filters:
            print(f"      filters {plan.filters}: {plan.allowed} vectors allowed, applied {plan.filter_mode}")
        if plan.user:
            print(f"      user {plan.user}: {plan.user_events} feedback event(s), beta {plan.beta:.2f}")
        print(f"      {plan.merge}")
    if not response.results:
        print("no results")
    for rank, r in enumerate(response.results, 1):
        span = f" [{r.start:.2f}-{r.end:.2f} s]" if r.start is not None else ""
        label = f" label {r.label}" if r.label is not None else ""
        print(f"{rank:>3}. {r.score:6.3f}  #{r.id:<6} {r.modality:<5} via {r.matched:<5}{label} {_what(r)}{span}")
        if r.explanation:
            e = r.explanation
            parts = ", ".join(f"{p['modality']} cos {p['cosine']:.3f}" for p in e["parts"])
            personal = f", personal {e['personal']:.3f} (beta {e['beta']:.2f})" if e["personal"] is not None else ""
            print(f"       relevance {e['relevance']:.3f} [{parts}]{personal}")
    return EXIT_OK


def _serve(args: argparse.Namespace, folder: Path) -> int:
    from crossmodal.engine import Engine
    from crossmodal.serve import serve
    from crossmodal.settings import load_settings

    settings = load_settings(args.settings)
    engine = Engine.open(folder, settings=settings, model=getattr(args, "model", None))

    def ready(url: str) -> None:
        print(f"crossmodal: serving collection {engine.collection.name} at {url}  (Ctrl+C to stop)", flush=True,
              file=sys.stderr if args.json else sys.stdout)

    serve(engine, settings, host=args.host, port=args.port, on_ready=ready)
    print("crossmodal: stopped", file=sys.stderr)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(args, _collection_folder(args))


def cmd_feedback(args: argparse.Namespace) -> int:
    event = "like" if args.like else "dislike" if args.dislike else "click"
    with _open_engine(args) as engine:
        event_id = engine.feedback(args.user, args.item, event)
    if args.json:
        _emit_json({"id": event_id, "user": args.user, "item": args.item, "event": event})
    else:
        print(f"recorded {event} of item {args.item} by {args.user}")
    return EXIT_OK


def cmd_user(args: argparse.Namespace) -> int:
    with _open_engine(args) as engine:
        history = engine.export_user(args.user)
        deleted = engine.delete_user(args.user) if args.delete else None
    if args.json:
        _emit_json({**history, **({"deleted": deleted} if deleted is not None else {})})
    else:
        for e in history["events"]:
            print(f"{e['ts']:.0f}  {e['event']:<8} item {e['item']}")
        print(f"{len(history['events'])} event(s) for {args.user}" + (f"; {deleted} deleted" if args.delete else ""))
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from crossmodal.index.build import remove_items
    from crossmodal.settings import load_settings

    if not args.ids and not args.uri:
        print("crossmodal: error: give item ids or --uri", file=sys.stderr)
        return EXIT_USAGE
    removed, missing = remove_items(_collection_folder(args), args.ids, args.uri or [], load_settings(args.settings))
    if args.json:
        _emit_json({"removed": removed, "not_found": missing})
    else:
        print(f"removed {removed}")
    for m in missing:
        print(f"crossmodal: not in the collection: {m}", file=sys.stderr)
    return EXIT_OK if not missing else EXIT_ERROR


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "demo": ("index the bundled demo corpus, search it from every modality, serve the web UI", cmd_demo),
    "train": ("train an aligner on a JSONL manifest", cmd_train),
    "eval": ("retrieval metrics of an aligner on a labelled JSONL manifest", cmd_eval),
    "models": ("list shipped models and aligner configs", cmd_models),
    "index": ("index files, folders and JSONL manifests into a collection", cmd_index),
    "search": ("search a collection by text, image or audio", cmd_search),
    "remove": ("remove items from a collection", cmd_remove),
    "migrate": ("move a collection's indexes to another backend (faiss or milvus) without re-embedding",
                cmd_migrate),
    "feedback": ("record a user's like, dislike or click on an item", cmd_feedback),
    "user": ("export (and optionally delete) a user's feedback history", cmd_user),
    "serve": ("serve the HTTP API and the web UI for a collection", cmd_serve),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossmodal", description="Cross-modal semantic search.")
    parser.add_argument("--version", action="version", version=f"crossmodal {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parsers = {name: sub.add_parser(name, help=help_, description=help_, parents=[common])
               for name, (help_, _) in COMMANDS.items()}
    for name, (_, func) in COMMANDS.items():
        parsers[name].set_defaults(func=func)

    def collection_options(p: argparse.ArgumentParser, default: str = "default") -> None:
        p.add_argument("--index", default=default, metavar="NAME",
                       help="collection name under --index-root, or a folder path (default: %(default)s)")
        p.add_argument("--index-root", type=Path, default=Path("indexes"), help="home of named collections")
        p.add_argument("--settings", type=Path, default=None, help="settings TOML (default: ./crossmodal.toml)")

    def backend_options(p: argparse.ArgumentParser, flag: str, help_: str) -> None:
        p.add_argument(flag, dest="to" if flag == "--to" else "backend", choices=["faiss", "milvus"],
                       required=flag == "--to", default=None, help=help_)
        p.add_argument("--milvus-uri", default=None, metavar="URI",
                       help="Milvus server such as http://host:19530 (default: Milvus Lite file milvus.db in the "
                            "collection folder)")
        p.add_argument("--milvus-token", default=None, metavar="TOKEN",
                       help="Milvus server token, user:password or API key; never stored (also read from "
                            "CROSSMODAL_MILVUS_TOKEN)")

    p = parsers["demo"]
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder (default: starter)")
    p.add_argument("-k", type=_positive_int, default=3, help="results per target modality")
    p.add_argument("--text", help="text query (default: %(default)s)")
    p.add_argument("--image", type=Path, help="image file to query with")
    p.add_argument("--audio", type=Path, help="audio file to query with")
    collection_options(p, default="demo")
    p.add_argument("--no-serve", action="store_true", help="print the sample searches and exit (no web server)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")

    p = parsers["train"]
    p.add_argument("--manifest", required=True, type=Path, help="JSONL items or pairs with labels/groups")
    p.add_argument("--out", required=True, type=Path, help="folder for the best checkpoint and the log")
    p.add_argument("--val", type=Path, help="validation manifest (default: hold out --val-fraction)")
    p.add_argument("--val-fraction", type=float, default=0.05)
    _add_training_options(p)

    p = parsers["eval"]
    p.add_argument("--manifest", required=True, type=Path, help="JSONL items with labels")
    p.add_argument("--model", default="starter", help="shipped model name or checkpoint folder")
    p.add_argument("--directions", type=_parse_directions, default=None,
                   help="comma-separated directions such as audio->image (default: all nine)")
    p.add_argument("--folds", type=_positive_int, default=None,
                   help="K-fold cross-validated training + evaluation on the manifest instead")
    p.add_argument("--out", type=Path, default=Path("build/folds"), help="checkpoints of --folds runs")
    _add_training_options(p)

    p = parsers["index"]
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders and .jsonl manifests")
    collection_options(p)
    p.add_argument("--model", default=None,
                   help="shipped model name or checkpoint folder (default: the collection's own, or starter)")
    p.add_argument("--kind", choices=["auto", "flat", "hnsw", "ivf_flat", "ivf_pq"], default=None,
                   help="index type (default: auto, by size and memory budget)")
    p.add_argument("--prune", action="store_true", help="remove entries whose files are gone")
    p.add_argument("--rebuild", action="store_true", help="drop the collection's contents and index from scratch")
    backend_options(p, "--backend", "where a new collection keeps its indexes (default: faiss; an existing "
                                    "collection keeps its own, see `crossmodal migrate`)")

    p = parsers["search"]
    collection_options(p)
    q = p.add_argument_group("query (any combination; weights apply in this order: text, image, audio)")
    q.add_argument("--text", help="text query part")
    q.add_argument("--image", type=Path, help="image file query part")
    q.add_argument("--audio", type=Path, help="audio file query part")
    q.add_argument("--weights", metavar="W,W,...", help="one positive weight per given part (default: equal)")
    p.add_argument("--target", default=None, help="image,audio,text (any subset; default all) or joint")
    p.add_argument("-k", type=_positive_int, default=10, help="number of results (default: %(default)s)")
    p.add_argument("--user", help="personalise with this user's feedback")
    p.add_argument("--fusion", choices=["early", "late"], default=None, help="how parts combine (default: early)")
    p.add_argument("--merge", choices=["score", "rrf"], default=None, help="late-fusion merge (default: score)")
    p.add_argument("--explain", action="store_true", help="print the plan and each result's score parts")
    f = p.add_argument_group("filters")
    f.add_argument("--only", type=_parse_modalities, default=None, metavar="M,...", help="item modalities to keep")
    f.add_argument("--uri-glob", help="keep items whose path matches this shell pattern")
    f.add_argument("--meta", type=_parse_meta, action="append", metavar="KEY=VALUE", help="metadata equality")
    f.add_argument("--after", type=_parse_time, help="file modified at or after (ISO date or epoch seconds)")
    f.add_argument("--before", type=_parse_time, help="file modified at or before")
    p.add_argument("--model", default=None, help="must match the collection's model (default: its own)")

    p = parsers["feedback"]
    collection_options(p)
    p.add_argument("--user", required=True)
    p.add_argument("--item", required=True, type=int, help="catalog item id (as search prints it)")
    e = p.add_mutually_exclusive_group(required=True)
    e.add_argument("--like", action="store_true")
    e.add_argument("--dislike", action="store_true")
    e.add_argument("--click", action="store_true")

    p = parsers["serve"]
    collection_options(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--model", default=None, help="must match the collection's model (default: its own)")

    p = parsers["user"]
    collection_options(p)
    p.add_argument("user", help="user name")
    p.add_argument("--delete", action="store_true", help="delete the history after printing it")

    p = parsers["remove"]
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="catalog item ids")
    p.add_argument("--uri", action="append", help="remove the item at this uri (repeatable)")
    collection_options(p)

    p = parsers["migrate"]
    collection_options(p)
    backend_options(p, "--to", "the backend to move the indexes to")

    p = parsers["models"]
    p.add_argument("--open-clip", action="store_true", help="also list open_clip architectures")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("numba", "PIL", "urllib3", "filelock", "root"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        return args.func(args)
    except CrossmodalError as exc:
        print(f"crossmodal: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("crossmodal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
