"""Metrics, evaluation against a manifest, ensembles of prediction tables, plots."""
