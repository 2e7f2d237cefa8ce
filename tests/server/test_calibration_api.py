"""Calibrated relevance over HTTP (Flask's test client on the demo corpus): scores, the
``min_relevance`` field in JSON and forms, the "may not know" answer, and the page and health
naming the model and what it knows."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from support.media import corpus_files

from crossmodal.core import Engine
from crossmodal.server import create_app

NOTICE = "nothing close; this model may not know this kind of content"


@pytest.fixture(scope="module")
def engine(demo_collection, starter):
    with Engine.open(demo_collection, aligner=starter) as eng:
        yield eng.load()


@pytest.fixture()
def client(engine):
    return create_app(engine).test_client()


def test_results_carry_calibrated_relevance_and_raw_cosine(client):
    body = client.post("/api/search", json={"text": "someone saying seven", "k": 12}).get_json()
    assert {r["modality"] for r in body["results"]} == {"image", "audio", "text"}
    assert all(0.9 <= r["relevance"] <= 1.0 and r["score"] == r["relevance"] and r["cosine"] > 0.6
               for r in body["results"])
    assert body["weak"] is False and body["notice"] is None and body["best_relevance"] > 0.97


def test_min_relevance_in_json_and_in_a_form(client):
    everything = client.post("/api/search", json={"text": "someone saying seven", "k": 100}).get_json()["results"]
    strong = client.post("/api/search", json={"text": "someone saying seven", "k": 100, "min_relevance": 0.97})
    kept = strong.get_json()["results"]
    assert 0 < len(kept) < len(everything)
    assert {r["id"] for r in kept} == {r["id"] for r in everything if r["relevance"] >= 0.97}
    audio = corpus_files("audio", "3", 1)[0]
    form = client.post("/api/search", data={"audio": (io.BytesIO(audio.read_bytes()), audio.name), "k": "50",
                                            "min_relevance": "0.95"}, content_type="multipart/form-data")
    assert form.status_code == 200, form.get_json()
    results = form.get_json()["results"]
    assert results and all(r["relevance"] >= 0.95 and r["label"] == "3" for r in results)
    for bad in (2, "high", -1):
        r = client.post("/api/search", json={"text": "seven", "min_relevance": bad})
        assert r.status_code == 400 and "min_relevance" in r.get_json()["error"]


def test_out_of_domain_queries_are_answered_with_a_plain_notice(client, tmp_path):
    body = client.post("/api/search", json={"text": "a dog barking in the park", "k": 5}).get_json()
    assert body["weak"] is True and body["notice"] == NOTICE and body["best_relevance"] < 0.5
    assert len(body["results"]) == 5  # the weak matches are still shown, with the notice
    noise = io.BytesIO()
    sf.write(noise, np.random.default_rng(0).normal(0, 0.3, 32000).astype(np.float32), 16000, format="WAV")
    r = client.post("/api/search", data={"audio": (io.BytesIO(noise.getvalue()), "noise.wav")},
                    content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["notice"] == NOTICE


def test_page_health_and_openapi_say_which_model_and_what_it_knows(client, starter):
    health = client.get("/api/health").get_json()
    assert health["model"].startswith("starter-digits") and health["model_description"] == starter.cfg.description
    page = client.get("/").get_data(as_text=True)
    assert 'id="about"' in page and health["model"] in page and starter.cfg.description in page
    spec = client.get("/api/openapi.json").get_json()
    fields = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert fields["properties"]["min_relevance"]["maximum"] == 1
    response = spec["components"]["schemas"]["SearchResponse"]["properties"]
    assert {"best_relevance", "weak", "notice"} <= set(response)
    assert {"cosine", "relevance"} <= set(spec["components"]["schemas"]["Result"]["properties"])
