"""Prediction with a trained run folder: inputs, the engine shared with dev scoring, speaker normalisation."""

from abhinaya.predict.inputs import (
    InputError,
    gather_inputs,
    predict,
    predict_utterances,
)

__all__ = ["InputError", "gather_inputs", "predict", "predict_utterances"]
