"""The command line is consistent: same option names for the same things, global options before
or after the command, help for every option with its default, old spellings still accepted."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from crossmodal.cli import EXIT_OK, EXIT_USAGE, main
from crossmodal.cli.parser import build_parser

PARSER = build_parser()
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = next(
    a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_visible_option_has_help_and_no_empty_default(name):
    parser = SUBCOMMANDS[name]
    for action in _options(parser) + [a for a in parser._actions if not a.option_strings]:
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"{name} {action.option_strings or action.dest}: no help"
    text = parser.format_help()
    assert "default: None" not in text and "(default: )" not in text


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_options_with_a_value_say_their_default(name):
    """An option that takes a value and has a default says it in its help (flags are off unless given,
    and required options have none)."""
    for action in _options(SUBCOMMANDS[name]):
        if action.help == argparse.SUPPRESS or action.required or action.nargs == 0:
            continue
        if action.dest in ("json", "quiet", "verbose") or isinstance(action, argparse._VersionAction):
            continue
        if action.default in (None, []) and action.dest in ("text", "image", "audio", "val", "init", "folds", "uri",
                                                      "item", "user", "meta"):
            continue  # nothing, unless given
        assert "default" in action.help, f"{name} {action.option_strings}: help does not give the default"


def test_the_same_thing_has_the_same_option_everywhere():
    spelled: dict[str, set[tuple[str, ...]]] = {}
    for parser in SUBCOMMANDS.values():
        for action in _options(parser):
            if action.dest in ("collection", "user", "item", "model", "root", "settings", "wait", "host", "port"):
                spelled.setdefault(action.dest, set()).add(tuple(action.option_strings))
    for dest, spellings in spelled.items():
        assert len(spellings) == 1, f"--{dest} is spelt {spellings}"
    assert spelled["collection"] == {("-c", "--collection", "--index")}


@pytest.mark.parametrize("argv", [
    ["-q", "--json", "--root", "R", "search", "--text", "x"],
    ["search", "--text", "x", "-q", "--json", "--root", "R"],
    ["search", "-q", "--text", "x", "--json", "--index-root", "R"],
])
def test_global_options_go_before_or_after_the_command(argv):
    args = PARSER.parse_args(argv)
    assert args.quiet and args.json and args.root == Path("R") and args.command == "search"


def test_global_defaults_hold_when_not_given():
    args = PARSER.parse_args(["search", "--text", "x"])
    assert not args.quiet and not args.json and args.root == Path("indexes") and args.settings is None


@pytest.mark.parametrize("argv, dest, value", [
    (["search", "--index", "mine", "--text", "x"], "collection", "mine"),
    (["search", "-c", "mine", "--text", "x"], "collection", "mine"),
    (["train", "--manifest", "m.jsonl", "--out", "o"], "item_list", Path("m.jsonl")),
    (["eval", "--list", "m.jsonl"], "item_list", Path("m.jsonl")),
    (["user", "ana"], "name", "ana"),
    (["user", "--user", "ana"], "user", "ana"),
    (["remove", "3", "4"], "ids", [3, 4]),
    (["remove", "--item", "3", "--item", "4"], "item", [3, 4]),
])
def test_old_and_new_spellings_both_parse(argv, dest, value):
    assert getattr(PARSER.parse_args(argv), dest) == value


def test_search_takes_plural_targets(capsys, demo_collection):
    code = main(["search", "--collection", str(demo_collection), "--text", "seven", "--target", "images,Audio",
                 "-k", "6", "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    results = json.loads(out)["results"]
    assert {r["modality"] for r in results} <= {"image", "audio"} and len(results) == 6
    assert all(r["label"] == "7" for r in results)


def test_user_given_twice_differently_is_a_usage_error(capsys, demo_collection):
    assert main(["user", "ana", "--user", "bob", "--collection", str(demo_collection)]) == EXIT_USAGE
    assert "two different users" in capsys.readouterr().err


def test_demo_help_text_has_no_none_default():
    text = SUBCOMMANDS["demo"].format_help()
    assert re.search(r"--text TEXT\s+text to search with", text)
    assert "None" not in text
