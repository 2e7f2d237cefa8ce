"""Storage: a collection on disk: its catalog, users and feedback, manifest and vector indexes."""
