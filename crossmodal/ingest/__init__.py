"""Ingest: decode and validate files before they reach the aligner."""
