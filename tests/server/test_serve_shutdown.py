"""A server stopped while its model still loads behind it exits with 0 (the abort this guards against
was a race: a daemon loader thread inside torch's import at interpreter exit; not every run hits it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys


def test_sigint_while_the_model_loads_behind_exits_cleanly(demo_collection):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--collection", str(demo_collection),
                           "--port", "0", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        assert re.search(r"http://\S+/", proc.stdout.readline())
        proc.send_signal(signal.SIGINT)  # at once: the model is still loading in its thread
        code = proc.wait(timeout=60)
        err = proc.stderr.read()
    assert code == 0, err
    assert "Fatal Python error" not in err, err
