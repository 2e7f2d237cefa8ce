"""The wheel a non-editable `pip install .` would install holds everything the program reads
at run time: the web UI, the shipped model, the configs and the demo corpus."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_web_ui_model_configs_and_every_package(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("crossmodal-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("crossmodal/web/templates/index.html", "crossmodal/web/static/app.js",
                     "crossmodal/web/static/app.css", "crossmodal/aligner/pretrained/starter/model.safetensors",
                     "crossmodal/aligner/pretrained/starter/config.json",
                     "crossmodal/aligner/configs/starter-digits.json",
                     "crossmodal/demo/corpus/items.jsonl", "crossmodal/storage/backends/faiss_index.py",
                     "crossmodal/server/app.py", "crossmodal/ingest/sniff.py"):
        assert required in names, required
    sources = {p.relative_to(ROOT / "crossmodal").as_posix() for p in (ROOT / "crossmodal").rglob("*.py")}
    assert {f"crossmodal/{s}" for s in sources} <= names
