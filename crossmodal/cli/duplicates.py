"""`crossmodal duplicates`: list the groups of near-duplicate items of a collection (one content
in several files), so they can be reviewed or removed (`crossmodal remove --uri PATH`).

One block per group on stdout (or one JSON object with ``--json``); exit 0 whether or not any
group is found.
"""

from __future__ import annotations

import argparse

from crossmodal.cli.commands import open_engine
from crossmodal.cli.output import EXIT_OK, emit_json


def cmd_duplicates(args: argparse.Namespace) -> int:
    with open_engine(args) as engine:
        threshold = engine.settings.search.duplicate_threshold if args.threshold is None else args.threshold
        groups = engine.duplicates(threshold)
        name = engine.name
    if args.json:
        emit_json({"collection": name, "threshold": threshold, "groups": [g.as_dict() for g in groups]})
        return EXIT_OK
    for number, group in enumerate(groups, 1):
        print(f"group {number}: {len(group.items)} {group.modality} items")
        for item in group.items:
            print(f"  #{item['id']:<6} " + ", ".join(item["uris"]))
    items = sum(len(g.items) for g in groups)
    print(f"collection {name}: {len(groups)} group(s) of near-duplicates, {items} items in them "
          f"(fingerprint cosine >= {threshold:g})")
    return EXIT_OK
