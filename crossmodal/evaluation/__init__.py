"""Retrieval quality: class-level recall@k and mAP for every query→gallery modality direction."""
