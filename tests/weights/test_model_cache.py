import pytest

from abhinaya.weights.cache import ModelNotAvailableError, resolve_model_path


def test_hub_id_resolves_to_a_copy_in_the_local_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    snapshot = tmp_path / "hub" / "models--someorg--tiny-encoder" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    refs = tmp_path / "hub" / "models--someorg--tiny-encoder" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_path("someorg/tiny-encoder") == snapshot
    with pytest.raises(ModelNotAvailableError, match="No model hub is used"):
        resolve_model_path("someorg/not-downloaded")
