"""Speech recognition: transcripts for the text members (Whisper through transformers or CTranslate2)."""
