"""Vector indexes: FAISS build, search, removal and persistence keyed by catalog ids."""
