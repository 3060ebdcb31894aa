"""Speech, text and speech-LLM models: encoders, pooling and classification heads."""
