"""`crossmodal check`: verify a collection and, with ``--repair``, fix what can be rebuilt.

One line per finding on stdout (or one JSON object with ``--json``); exit 0 when the collection
is healthy or fully repaired, 1 when anything is left to do. A collection that cannot even be
opened (its catalog missing or unreadable) is itself the finding.
"""

from __future__ import annotations

import argparse

from crossmodal.cli.commands import open_engine
from crossmodal.cli.output import EXIT_ERROR, EXIT_OK, emit_json
from crossmodal.errors import StorageError


def cmd_check(args: argparse.Namespace) -> int:
    try:
        engine = open_engine(args)
    except StorageError as exc:
        problem = str(exc)
        if args.json:
            emit_json({"collection": args.collection, "repair": args.repair, "healthy": False, "checked": {},
                       "findings": [{"area": "collection", "subject": str(args.collection), "problem": problem,
                                     "fix": "cannot be repaired by check", "repaired": False}]})
        else:
            print(f"collection {args.collection}: cannot be opened: {problem}")
        return EXIT_ERROR
    with engine:
        report = engine.check(repair=args.repair, wait=args.wait)
    if args.json:
        emit_json(report.as_dict())
        return EXIT_OK if report.healthy else EXIT_ERROR
    for finding in report.findings:
        print(finding.line())
    for note in report.notes:
        print(f"note     {note}")
    left = sum(1 for f in report.findings if not f.repaired)
    looked = ", ".join(f"{n} {what}" for what, n in report.checked.items())
    state = "healthy" if not report.findings else \
        f"{len(report.findings)} finding(s), {len(report.findings) - left} repaired, {left} left"
    print(f"collection {report.collection} at {report.folder}: checked {looked}; {state}")
    return EXIT_OK if report.healthy else EXIT_ERROR
