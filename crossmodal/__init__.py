"""crossmodal: cross-modal semantic search over text, images and audio."""

__version__ = "0.1.0"
