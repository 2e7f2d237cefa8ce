"""Helpers the tests share: media files made on the fly, and reference answers."""
