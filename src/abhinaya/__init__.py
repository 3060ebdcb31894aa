"""Abhinaya: speech emotion recognition in naturalistic conditions.

The package is organised one noun per module: ``labels`` (label sets and corpus
mappings), ``manifest`` (JSONL utterance manifests), ``audio`` (decoding and
resampling), ``corpora`` (one ``prepare_<corpus>`` function per corpus plus
test dummies), ``losses``, ``metrics``, ``ensemble`` (voting over prediction
tables) and ``predictions`` (the prediction-table format).
"""

__version__ = "0.1.0"
