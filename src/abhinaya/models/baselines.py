"""Cheap text reference classifiers that the text members are compared with.

- ``TextBaseline``: TF-IDF of word uni/bi-grams + logistic regression.
- ``EmbeddingTextBaseline``: frozen sentence embeddings from any transformers
  encoder folder (e.g. all-MiniLM-L6-v2) + logistic regression.

Both are trained on a list of ``Utterance`` records and predict a
``PredictionTable``. Class weights are balanced by default, as for the learned members.
The acoustic reference is a member of its own (``members/egemaps.py``: eGeMAPS
functionals + logistic regression, trained and predicted like every member).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.predictions import PredictionTable, table_from_probs


def _align_probs(model, probs: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """Classifier columns (the classes it saw) -> the full label-set order."""
    full = np.zeros((probs.shape[0], len(label_set)))
    for column, index in enumerate(model.classes_):
        full[:, int(index)] = probs[:, column]
    return full


class TextBaseline:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression."""

    def __init__(self, label_set: LabelSet, normalise: Callable[[str], str] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.label_set = label_set
        self.model = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True),
            LogisticRegression(C=2.0, max_iter=2000, class_weight="balanced"),
        )

    @staticmethod
    def _texts(utterances: Sequence[Utterance]) -> list[str]:
        return [u.text or "" for u in utterances]

    def fit(self, utterances: Sequence[Utterance]) -> "TextBaseline":
        labelled = [u for u in utterances if u.label is not None]
        if not labelled:
            raise ValueError("no labelled training utterances")
        self.model.fit(self._texts(labelled), self.label_set.encode_many([u.label for u in labelled]))
        return self

    def predict(self, utterances: Sequence[Utterance], name: str = "tfidf-logreg") -> PredictionTable:
        probs = self.model.predict_proba(self._texts(utterances))
        return table_from_probs([u.id for u in utterances], _align_probs(self.model, probs, self.label_set), self.label_set, name)


class EmbeddingTextBaseline:
    """Frozen sentence embeddings + logistic regression.

    The embedding of a text is the mean of the encoder's last hidden states over
    its real tokens (padding masked out), L2-normalised: the sentence-transformers
    recipe of all-MiniLM-L6-v2, computed here with plain transformers. Texts are
    embedded in batches of similar length, and each distinct text only once.
    """

    def __init__(self, label_set: LabelSet, model: str, *, batch_size: int = 64, max_tokens: int = 128,
                 progress: bool = True, C: float = 1.0, class_weight: str | None = "balanced"):
        from transformers import AutoModel, AutoTokenizer

        self.label_set = label_set
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.progress = progress
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.encoder = AutoModel.from_pretrained(model).eval()
        self._cache: dict[str, np.ndarray] = {}
        self.model = self._classifier(C, class_weight)

    @staticmethod
    def _classifier(C: float, class_weight: str | None):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=3000, class_weight=class_weight)

    def with_classifier(self, C: float, class_weight: str | None = "balanced") -> "EmbeddingTextBaseline":
        """An unfitted copy with another regulariser / class weighting that shares this
        one's encoder and embedding cache (so a sweep embeds each text once)."""
        import copy

        other = copy.copy(self)
        other.model = self._classifier(C, class_weight)
        return other

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        import torch

        todo = sorted({t for t in texts if t not in self._cache}, key=len)
        batches = [todo[i: i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding texts", disable=None if self.progress else True, leave=False):
                encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_tokens,
                                         return_tensors="pt")
                hidden = self.encoder(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                mean = torch.nn.functional.normalize(mean, dim=-1)
                for text, row in zip(batch, mean.float().numpy()):
                    self._cache[text] = row
        return np.stack([self._cache[t] for t in texts])

    def fit(self, utterances: Sequence[Utterance]) -> "EmbeddingTextBaseline":
        labelled = [u for u in utterances if u.label is not None]
        if not labelled:
            raise ValueError("no labelled training utterances")
        x = self.embed(TextBaseline._texts(labelled))
        self.model.fit(x, self.label_set.encode_many([u.label for u in labelled]))
        return self

    def predict(self, utterances: Sequence[Utterance], name: str = "embedding-logreg") -> PredictionTable:
        probs = self.model.predict_proba(self.embed(TextBaseline._texts(utterances)))
        return table_from_probs([u.id for u in utterances], _align_probs(self.model, probs, self.label_set), self.label_set, name)
