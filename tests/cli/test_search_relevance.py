"""`crossmodal search` with calibrated relevance: the printed scores, --min-relevance, and the
line that says when the model may not know."""

from __future__ import annotations

import json
import re

from support.cli import run_cli

from crossmodal.cli import EXIT_ERROR, EXIT_OK

NOTICE = "nothing close; this model may not know this kind of content"


def test_min_relevance_drops_weak_matches(demo_collection, capsys):
    code, out, err = run_cli(capsys, "search", "--collection", str(demo_collection), "--text", "someone saying seven",
                             "-k", "100", "--min-relevance", "0.97", "--json", "-q")
    assert code == EXIT_OK, err
    body = json.loads(out)
    assert 0 < len(body["results"]) < 100
    assert all(r["relevance"] >= 0.97 and r["label"] == "7" for r in body["results"])
    assert body["weak"] is False and body["notice"] is None
    code, _, err = run_cli(capsys, "search", "--collection", str(demo_collection), "--text", "seven",
                           "--min-relevance", "1.5", "-q")
    assert code == EXIT_ERROR and "min_relevance" in err


def test_lines_show_score_and_cosine_and_say_when_nothing_is_close(demo_collection, capsys):
    code, out, err = run_cli(capsys, "search", "--collection", str(demo_collection), "--text", "someone saying seven",
                             "-k", "12", "-q")
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert len(lines) == 12 and all(re.match(r"\s*\d+\.\s+0\.9\d\d cos\s+[01]\.\d{3}\s+#\d+", line) for line in lines)
    assert {line.split()[5] for line in lines} == {"image", "audio", "text"}
    assert NOTICE not in out
    code, out, err = run_cli(capsys, "search", "--collection", str(demo_collection), "--text",
                             "a dog barking in the park", "-k", "3", "--explain", "-q")
    assert code == EXIT_OK, err
    assert re.search(rf"^{NOTICE} \(best calibrated relevance 0\.\d{{3}}\)$", out, re.M), out
    assert "calibration stored with the indexes: text>text best" in out
    assert re.search(r"relevance 0\.\d{3}, cosine 0\.\d{3} in the (text|image|audio) index \[text cos 0\.\d{3} z [-+]",
                     out), out
