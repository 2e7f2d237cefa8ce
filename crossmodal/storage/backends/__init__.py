"""Where a collection's vector indexes live: FAISS files in its folder, or Milvus collections."""
