"""`crossmodal recommend` ("for you": a list for a user with no query) and `crossmodal similar`
("more like this": items near one item): options into a call on the core, results printed."""

from __future__ import annotations

import argparse

from crossmodal.cli.commands import open_engine
from crossmodal.cli.output import EXIT_OK, emit_json, print_results, what


def cmd_recommend(args: argparse.Namespace) -> int:
    with open_engine(args) as engine:
        response = engine.recommend(args.user, args.k, args.target, include_rated=args.include_rated,
                                    explain=args.explain, method=args.method, refit=args.refit)
    if args.json:
        emit_json(response.as_dict())
        return EXIT_OK
    model = response.model
    state = ("collaborative model off" if not model["collaborative"]
             else "collaborative model not used" if response.method in ("content", "popular")
             else f"collaborative model of {model['users']} users x {model['items']} items" if model["fitted"]
             else f"no collaborative model (fewer than {engine.settings.recommend.min_users} users with feedback)")
    print(f"for {response.user} ({response.history} liked item(s)): {response.used}"
          + (f" (asked for {response.method})" if response.used != response.method else "") + f"; {state}")
    if not response.results:
        print("no results")
    for rank, r in enumerate(response.results, 1):
        label = f" label {r.label}" if r.label is not None else ""
        print(f"{rank:>3}. {r.score:6.3f}  #{r.id:<6} {r.modality:<5}{label} {what(r)}")
        if r.sources:
            print("       " + ", ".join(f"{name} {'-' if value is None else f'{value:.3f}'}"
                                        for name, value in r.sources.items()))
        for reason in r.explanation or ():
            print(f"       - {reason['text']}")
    return EXIT_OK


def cmd_similar(args: argparse.Namespace) -> int:
    with open_engine(args) as engine:
        response = engine.similar(args.item, args.k, args.target, user=args.user, explain=args.explain)
    if args.json:
        emit_json(response.as_dict(explain=args.explain))
        return EXIT_OK
    print_results(response.results, response.notice, response.plan.best_relevance)
    return EXIT_OK
