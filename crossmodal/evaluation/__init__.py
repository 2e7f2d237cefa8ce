"""Retrieval quality: labelled items loaded into memory, and class-level recall@k and mAP for
every query→gallery modality direction. Stands alone: training builds on it."""
