"""Miniature corpora and tiny random-weight models for tests and the demo."""
