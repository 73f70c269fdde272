"""Offline training machinery shared by every trainer: ranks, the DeepSpeed engine, resumable state, metrics,
log-probabilities and the offline trainer base."""
