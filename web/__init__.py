"""Web UI assets (templates/ and static/), installed as the `crossmodal.web` package."""
