"""The text baselines: TF-IDF and frozen sentence embeddings, each + logistic regression."""

import numpy as np
import pytest

from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.models.baselines import EmbeddingTextBaseline, TextBaseline

WORDS = ["great", "lovely", "joy", "smile", "awful", "hate", "furious", "shout", "the", "day", "was", "so", "a"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A tiny random BERT encoder with a word-level tokenizer (a folder as save_pretrained writes it)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=0)
    BertModel(config).save_pretrained(path)
    return path


def _utterances():
    happy = ["great day", "lovely smile", "joy joy", "the day was great", "so lovely", "a smile"]
    angry = ["awful day", "hate hate", "furious shout", "the day was awful", "so furious", "a shout"]
    rows = [(t, "happy") for t in happy] + [(t, "angry") for t in angry]
    return [Utterance(id=f"u{i}", text=t, label=label) for i, (t, label) in enumerate(rows)]


def test_embedding_baseline_rows_do_not_depend_on_batch_padding(tiny_bert_dir):
    baseline = EmbeddingTextBaseline(LabelSet(["angry", "happy"]), str(tiny_bert_dir), batch_size=4, progress=False)
    texts = ["joy", "the day was so lovely", "hate", "a great smile"]
    together = baseline.embed(texts)
    alone = np.stack([EmbeddingTextBaseline(LabelSet(["angry", "happy"]), str(tiny_bert_dir), batch_size=1,
                                            progress=False).embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(together[0], together[2])


@pytest.mark.parametrize("make", ["tfidf", "embedding"])
def test_text_baselines_fit_separable_training_texts(make, tiny_bert_dir):
    labels = LabelSet(["angry", "happy", "sad"])  # "sad" never seen in training
    utterances = _utterances()
    if make == "tfidf":
        baseline = TextBaseline(labels)
    else:
        baseline = EmbeddingTextBaseline(labels, str(tiny_bert_dir), progress=False, C=100.0)
    table = baseline.fit(utterances).predict(utterances)
    assert table.ids == [u.id for u in utterances]
    assert table.labels == [u.label for u in utterances]
    probs = np.asarray(table.probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(probs[:, list(labels).index("sad")] == 0.0)


def test_text_baselines_need_labelled_utterances(tiny_bert_dir):
    unlabelled = [Utterance(id="x", text="great day", label=None)]
    with pytest.raises(ValueError, match="no labelled"):
        EmbeddingTextBaseline(LabelSet(["happy"]), str(tiny_bert_dir), progress=False).fit(unlabelled)


def test_embedding_baseline_sweep_shares_the_embedding_cache(tiny_bert_dir):
    labels = LabelSet(["angry", "happy"])
    base = EmbeddingTextBaseline(labels, str(tiny_bert_dir), progress=False)
    utterances = _utterances()
    before = base.fit(utterances).predict(utterances).probs
    other = base.with_classifier(0.01, None)
    assert other._cache is base._cache and other.encoder is base.encoder
    assert other.model is not base.model and other.model.C == 0.01 and other.model.class_weight is None
    embedded = len(base._cache)
    other.fit(utterances)
    assert len(base._cache) == embedded  # nothing embedded twice
    np.testing.assert_array_equal(base.predict(utterances).probs, before)  # the original is untouched
    assert not np.allclose(other.predict(utterances).probs, before)
