"""Datasets and batching: audio and text datasets, length-bucketed batches, the utterances of a recipe."""
