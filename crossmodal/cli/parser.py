"""The `crossmodal` argument parser: one subcommand per operation, the same option names for
the same things everywhere, and global options accepted before or after the subcommand.

Old spellings keep working as aliases: ``--index NAME`` for ``--collection``, ``--index-root``
for ``--root``, ``--manifest`` for ``--list``, ``user NAME`` and ``remove ID...`` positionally.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossmodal import __version__

MODALITY_NAMES = ("text", "image", "audio")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def modality_list(text: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    items = [t[:-1] if t.endswith("s") and t[:-1] in MODALITY_NAMES else t for t in items]
    bad = [t for t in items if t not in MODALITY_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown modality {bad[0]!r}; use text, image, audio")
    return items


def batch_sizes(text: str) -> dict[str, int]:
    sizes = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in MODALITY_NAMES or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected modality=N pairs such as image=192,audio=96; got {part!r}")
        sizes[key] = int(value)
    return sizes


def meta_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """Options every command takes. On the subcommands their defaults are suppressed, so a value
    given before the subcommand is not reset by the subcommand's parser."""
    def default(value):
        return argparse.SUPPRESS if suppress else value

    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument("--json", action="store_true", default=default(False), help="print one JSON object on stdout")
    g.add_argument("-q", "--quiet", action="store_true", default=default(False),
                   help="no progress bars or info messages")
    g.add_argument("-v", "--verbose", action="store_true", default=default(False), help="debug messages")
    g.add_argument("--settings", type=Path, metavar="FILE", default=default(None),
                   help="settings TOML (default: ./crossmodal.toml, or the file named by CROSSMODAL_CONFIG)")
    g.add_argument("--root", "--index-root", dest="root", type=Path, metavar="DIR", default=default(Path("indexes")),
                   help="folder holding named collections (default: indexes)")


def _collection_option(p: argparse.ArgumentParser, default: str = "default") -> None:
    p.add_argument("-c", "--collection", "--index", dest="collection", default=default, metavar="NAME",
                   help=f"collection: a name under --root, or a folder path (default: {default})")


def _model_option(p: argparse.ArgumentParser, help_: str) -> None:
    p.add_argument("--model", default=None, metavar="MODEL", help=help_)


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another process writing the collection (default: 0, fail at once)")


def _backend_options(p: argparse.ArgumentParser, migrate: bool) -> None:
    if migrate:
        p.add_argument("--to", required=True, choices=["faiss", "milvus"], help="the backend to move the indexes to")
    else:
        p.add_argument("--backend", choices=["faiss", "milvus"], default=None,
                       help="where a new collection keeps its indexes (default: faiss; an existing collection "
                            "keeps its own, see `crossmodal migrate`)")
    p.add_argument("--milvus-uri", default=None, metavar="URI",
                   help="Milvus server such as http://host:19530 (default: a Milvus Lite file milvus.db in the "
                        "collection folder)")
    p.add_argument("--milvus-token", default=None, metavar="TOKEN",
                   help="Milvus server token, user:password or API key; never stored (default: "
                        "CROSSMODAL_MILVUS_TOKEN or [index] milvus_token)")


def _search_node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replica", default=None, metavar="PREFIX",
                   help="open the collection as a search node, from its Milvus server alone (no collection folder "
                        "needed: any machine that reaches the server); PREFIX is the collection's Milvus prefix, "
                        "printed by `crossmodal index`; needs --milvus-uri (default: open the collection folder)")
    p.add_argument("--milvus-uri", default=None, metavar="URI",
                   help="the Milvus server of a --replica search node (default: none; required with --replica)")
    p.add_argument("--milvus-token", default=None, metavar="TOKEN",
                   help="its token, user:password or API key (default: CROSSMODAL_MILVUS_TOKEN or "
                        "[index] milvus_token)")


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default: 8000)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="protect the server: API clients send 'Authorization: Bearer TOKEN', browsers log in "
                        "with it (default: CROSSMODAL_TOKEN or [server] token; none on a loopback address)")
    p.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                   help="a Host name the server answers to besides the loopback names and --host; repeatable "
                        "(default: [server] allowed_hosts)")
    p.add_argument("--insecure-no-token", action="store_true",
                   help="serve a non-loopback address without a token (only behind something that guards it)")


def _query_options(p: argparse.ArgumentParser, default_k: int, k_help: str) -> None:
    q = p.add_argument_group("query (any combination; weights apply in this order: text, image, audio)")
    q.add_argument("--text", default=None, help="text to search with")
    q.add_argument("--image", type=Path, default=None, metavar="FILE", help="image file to search with")
    q.add_argument("--audio", type=Path, default=None, metavar="FILE", help="audio file to search with")
    p.add_argument("-k", type=positive_int, default=default_k, help=f"{k_help} (default: {default_k})")


def _training_options(p: argparse.ArgumentParser, hidden: bool = False, device: bool = True) -> None:
    """Options of a training run; ``hidden`` keeps them accepted but out of the help (the
    deprecated ``eval --folds``)."""
    def h(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    g = p if hidden else p.add_argument_group("training")
    g.add_argument("--config", default="starter-digits",
                   help=h("aligner architecture: a shipped config name or a JSON path (default: starter-digits)"))
    g.add_argument("--init", metavar="MODEL",
                   help=h("start from a trained model (shipped name or checkpoint folder) instead of --config"))
    g.add_argument("--epochs", type=positive_int, default=12, help=h("passes over the data (default: 12)"))
    g.add_argument("--steps-per-epoch", type=positive_int, default=None,
                   help=h("optimiser steps per epoch (default: one pass over the largest modality)"))
    g.add_argument("--batch-sizes", type=batch_sizes, default=None, metavar="M=N,...",
                   help=h("per-modality batch sizes (default: text=64,image=192,audio=96)"))
    g.add_argument("--lr", type=float, default=2e-3, help=h("peak learning rate (default: 0.002)"))
    g.add_argument("--weight-decay", type=float, default=0.05, help=h("AdamW weight decay (default: 0.05)"))
    g.add_argument("--warmup-steps", type=int, default=100, help=h("linear warm-up steps (default: 100)"))
    g.add_argument("--seed", type=int, default=0, help=h("random seed (default: 0)"))
    g.add_argument("--freeze-backbones", type=modality_list, default=[], metavar="M,...",
                   help=h("modalities whose backbone stays frozen; its features are computed once and cached "
                          "(default: none)"))
    g.add_argument("--intra-modal-weight", type=float, default=0.5,
                   help=h("weight of the within-modality loss terms (default: 0.5)"))
    g.add_argument("--no-augment", action="store_true", help=h("train without data augmentation"))
    if device:
        g.add_argument("--device", default="auto", help=h("auto, cpu, cuda, cuda:1, ... (default: auto)"))
    g.add_argument("--threads", type=positive_int, default=None,
                   help=h("CPU threads for torch (default: torch's own choice)"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossmodal", description="Cross-modal semantic search over your "
                                     "images, audio and text.")
    parser.add_argument("--version", action="version", version=f"crossmodal {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _global_options(p, suppress=True)
        return p

    p = command("demo", "index the bundled demo corpus, search it from every modality, serve the web UI")
    _collection_option(p, default="demo")
    _query_options(p, 3, "results per target modality")
    _model_option(p, "model of a new demo collection: shipped name, checkpoint folder, open_clip:ARCH/PRETRAINED "
                     "or a config that needs no training; `crossmodal models` lists them (default: starter)")
    p.add_argument("--no-serve", action="store_true", help="print the sample searches and exit (no web server)")
    _server_options(p)

    p = command("index", "index files, folders and JSONL item lists into a collection, incrementally")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders and .jsonl item lists")
    _collection_option(p)
    _model_option(p, "model of a new collection: shipped name, checkpoint folder, open_clip:ARCH/PRETRAINED (a tag "
                     "or a local weights file) or a config that needs no training; `crossmodal models` lists them "
                     "(default: the collection's own, or starter)")
    p.add_argument("--kind", choices=["auto", "flat", "hnsw", "ivf_flat", "ivf_pq"], default=None,
                   help="index type (default: auto, by size and memory budget)")
    p.add_argument("--prune", action="store_true", help="remove entries whose files are gone")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow links to files outside the given folders (each target becomes part of the "
                        "collection); by default such links are skipped")
    p.add_argument("--rebuild", action="store_true", help="drop the collection's contents and index from scratch")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where files are decoded and embedded: local worker processes, or Ray workers (the ray "
                        "extra) (default: [ingest] executor, local)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="Ray cluster head host:port for --executor ray (default: start a local Ray for the run)")
    _backend_options(p, migrate=False)
    _wait_option(p)

    p = command("search", "search a collection by text, image or audio")
    _collection_option(p)
    _search_node_options(p)
    _query_options(p, 10, "number of results")
    p.add_argument("--weights", metavar="W,W,...", help="one positive weight per given part (default: equal)")
    p.add_argument("--target", default=None, metavar="T,...",
                   help="modalities to return: image, audio, text (singular or plural, any subset), or joint "
                        "(default: all three)")
    p.add_argument("--user", default=None, help="personalise with this user's feedback (default: nobody)")
    p.add_argument("--fusion", choices=["early", "late"], default=None,
                   help="how query parts combine (default: [search] fusion, early)")
    p.add_argument("--merge", choices=["score", "rrf"], default=None,
                   help="late-fusion merge (default: [search] late_merge, score)")
    p.add_argument("--explain", action="store_true", help="print the plan and each result's score parts")
    p.add_argument("--collapse", action=argparse.BooleanOptionalAction, default=None,
                   help="show near-duplicates (one content in several files: re-encoded, resized, at another "
                        "volume) as one result with its copies listed; --no-collapse shows each file "
                        "(default: [search] collapse_duplicates, on)")
    p.add_argument("--min-relevance", type=float, default=None, metavar="R",
                   help="drop results whose calibrated relevance (0 to 1) is below R (default: keep the top k)")
    f = p.add_argument_group("filters")
    f.add_argument("--only", type=modality_list, default=None, metavar="M,...",
                   help="item modalities to keep (default: all)")
    f.add_argument("--uri-glob", default=None, metavar="PATTERN",
                   help="keep items whose path matches this shell pattern (default: any path)")
    f.add_argument("--meta", type=meta_pair, action="append", metavar="KEY=VALUE",
                   help="keep items whose metadata has this value; repeatable (default: any)")
    f.add_argument("--after", default=None, metavar="TIME",
                   help="file modified at or after, as an ISO date or epoch seconds (default: no bound)")
    f.add_argument("--before", default=None, metavar="TIME",
                   help="file modified at or before, as an ISO date or epoch seconds (default: no bound)")
    _model_option(p, "must be the collection's own model (default: the collection's own)")

    p = command("feedback", "record a user's like, dislike or click on an item; it shapes their next search")
    _collection_option(p)
    p.add_argument("--user", required=True, help="user name")
    p.add_argument("--item", required=True, type=positive_int, metavar="ID", help="item id, as search prints it")
    e = p.add_mutually_exclusive_group(required=True)
    e.add_argument("--like", action="store_true", help="the user liked the item")
    e.add_argument("--dislike", action="store_true", help="the user disliked the item")
    e.add_argument("--click", action="store_true", help="the user opened the item")

    p = command("user", "export a user's feedback history as JSON (and optionally delete it)")
    _collection_option(p)
    p.add_argument("name", nargs="?", default=None, metavar="USER", help="user name (same as --user)")
    p.add_argument("--user", default=None, help="user name")
    p.add_argument("--delete", action="store_true", help="delete the history after printing it")

    p = command("recommend", "a ranked list for a user with no query: from their feedback (content), everyone's "
                             "(collaborative), popularity, or a hybrid of them")
    _collection_option(p)
    p.add_argument("--user", required=True, help="user name (one without feedback gets popular, varied items)")
    p.add_argument("-k", type=positive_int, default=10, help="number of results (default: 10)")
    p.add_argument("--target", default=None, metavar="T,...",
                   help="item modalities to recommend: image, audio, text (default: all three)")
    p.add_argument("--method", choices=["hybrid", "content", "collaborative", "popular"], default="hybrid",
                   help="where scores come from (default: hybrid)")
    p.add_argument("--include-rated", action="store_true", help="keep items the user already reacted to")
    p.add_argument("--explain", action="store_true",
                   help="print each result's source scores and why: the liked items it relates to")
    p.add_argument("--refit", action="store_true", help="refit the collaborative model now")

    p = command("similar", "more like this: the items of every modality nearest to one item")
    _collection_option(p)
    p.add_argument("--item", required=True, type=positive_int, metavar="ID", help="item id, as search prints it")
    p.add_argument("-k", type=positive_int, default=10, help="number of results (default: 10)")
    p.add_argument("--target", default=None, metavar="T,...",
                   help="modalities to return: image, audio, text, or joint (default: all three)")
    p.add_argument("--user", default=None, help="personalise with this user's feedback (default: nobody)")
    p.add_argument("--explain", action="store_true", help="print each result's score parts")

    p = command("remove", "remove items from a collection by id or by path")
    _collection_option(p)
    p.add_argument("ids", nargs="*", type=positive_int, metavar="ID", help="item ids (same as --item)")
    p.add_argument("--item", action="append", type=positive_int, default=[], metavar="ID",
                   help="item id to remove (repeatable)")
    p.add_argument("--uri", action="append", default=[], metavar="PATH", help="remove the item at this path "
                   "(repeatable)")
    _wait_option(p)

    p = command("migrate", "move a collection's indexes to another backend without re-embedding")
    _collection_option(p)
    _backend_options(p, migrate=True)
    _wait_option(p)

    p = command("check", "verify a collection (catalog, every stored vector, every index, leftovers of killed runs) "
                         "and repair what can be rebuilt")
    _collection_option(p)
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged indexes from the catalog, delete leftovers, and mark items whose vectors "
                        "are damaged so the next `index` of their files embeds them again (takes the writer lock)")
    _wait_option(p)

    p = command("duplicates", "list the groups of near-duplicate items: one content in several files (re-encoded, "
                              "resized, cropped a little, at another volume), or one text in several places")
    _collection_option(p)
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="least cosine of two items' content fingerprints for them to be copies, above 0 and at "
                        "most 1 (default: [search] duplicate_threshold, 0.98)")

    p = command("serve", "serve the HTTP API and the web UI for a collection")
    _collection_option(p)
    _search_node_options(p)
    _server_options(p)
    _model_option(p, "must be the collection's own model (default: the collection's own)")

    p = command("train", "train an aligner on a JSONL item list (or cross-validate with --folds)")
    p.add_argument("--list", "--manifest", dest="item_list", required=True, type=Path, metavar="FILE",
                   help="JSONL item list: items or pairs, with labels or groups")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder for the best checkpoint and the training log (with --folds: one per fold)")
    p.add_argument("--val", type=Path, metavar="FILE", help="validation item list (default: hold out "
                   "--val-fraction of the training list)")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="share of the training list held out for validation (default: 0.05)")
    p.add_argument("--folds", type=positive_int, default=None, metavar="K",
                   help="K-fold cross-validated training and evaluation instead of one run")
    _training_options(p)

    p = command("eval", "retrieval metrics of a model on a labelled JSONL item list")
    p.add_argument("--list", "--manifest", dest="item_list", required=True, type=Path, metavar="FILE",
                   help="JSONL item list with labels")
    _model_option(p, "shipped name, checkpoint folder, open_clip:ARCH/PRETRAINED or a config that needs no "
                     "training (default: starter)")
    p.add_argument("--directions", default=None, metavar="Q->G,...",
                   help="query->gallery directions such as 'audio->image' (default: all nine)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--folds", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path("build/folds"), help=argparse.SUPPRESS)
    p.add_argument("--val-fraction", type=float, default=0.1, help=argparse.SUPPRESS)
    _training_options(p, hidden=True, device=False)

    p = command("models", "the routes to a model (shipped, open_clip with no training, configs to train), one "
                          "example each; with --open-clip, the open_clip architectures and their tags")
    p.add_argument("--open-clip", action="store_true", help="also list open_clip architectures and their tags")

    p = command("bridge", "give an image-text model an audio tower with no audio or image pairs: a head trained on "
                          "captions embedded by both models' text towers carries an audio-text model (CLAP, or a "
                          "crossmodal model with text and audio towers) into the image-text space")
    p.add_argument("--image-text", required=True, metavar="MODEL",
                   help="the model whose space is kept: shipped name, checkpoint folder, open_clip:ARCH/PRETRAINED "
                        "or a config that needs no training")
    p.add_argument("--audio-text", required=True, metavar="MODEL",
                   help="a CLAP folder (written by ClapModel.save_pretrained) or Hugging Face hub id such as "
                        "laion/clap-htsat-unfused (needs crossmodal[clap]), or a crossmodal checkpoint with text "
                        "and audio towers")
    p.add_argument("--captions", type=Path, default=None, metavar="FILE",
                   help="text file, one caption per line, describing the sounds and scenes to search (default: "
                        "the shipped list of 3,000 sound and scene descriptions)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="checkpoint folder to write (--model DIR)")
    b = p.add_argument_group("bridge training")
    b.add_argument("--head", choices=["mlp", "linear"], default="mlp", help="bridge head (default: mlp)")
    b.add_argument("--hidden-dim", type=positive_int, default=1024, help="MLP head width (default: 1024)")
    b.add_argument("--noise", type=float, default=1.0,
                   help="norm of the Gaussian noise added to each caption vector while training, to cover the gap "
                        "between the audio-text model's text and audio vectors (default: 1.0)")
    b.add_argument("--steps", type=positive_int, default=3000, help="optimiser steps (default: 3000)")
    b.add_argument("--batch-size", type=positive_int, default=256, help="captions per step (default: 256)")
    b.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 0.001)")
    b.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the captions held out to score the bridge (default: 0.1)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser
