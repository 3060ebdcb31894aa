"""The tiny random-weight models of abhinaya.testing.tiny."""

from abhinaya.testing.tiny import write_tiny_llama_for_texts


def test_tiny_llama_knows_the_words_it_was_given(tmp_path):
    from abhinaya.weights.llm import load_tokenizer

    folder = write_tiny_llama_for_texts(tmp_path / "llm", ["Oh, that’s GREAT!", "so lonely"])
    tokenizer = load_tokenizer(folder)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("So great, oh! Lonely", add_special_tokens=False)["input_ids"])
    assert tokens == ["so", "great", ",", "oh", "!", "lonely"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("dreadful", add_special_tokens=False)["input_ids"]) == ["<unk>"]
    assert "assistant" in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                          add_generation_prompt=True)


def test_tiny_models_are_the_same_every_time(tmp_path):
    from abhinaya.testing.tiny import write_tiny_llama

    first = write_tiny_llama(tmp_path / "a")
    second = write_tiny_llama(tmp_path / "b")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert not (tmp_path / "a.tmp").exists()
