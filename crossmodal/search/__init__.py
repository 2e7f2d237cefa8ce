"""Search: a query validated once, planned over the indexes, reranked for the user."""
