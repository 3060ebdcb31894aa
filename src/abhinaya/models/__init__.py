"""Trainable models, one per file (config, module, from_pretrained): SSL classifier, speech LLM, LLM text classifier, baselines."""
