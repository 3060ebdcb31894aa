"""``Member.build`` returns the model and the resolved recipe and leaves the member's own recipe as it was, for every
member (tiny random-weight models)."""

import pytest

from abhinaya.labels import CORPUS_LABEL_SETS
from abhinaya.members import MEMBERS, get_member
from abhinaya.recipes import to_dict
from abhinaya.runs import recipe_from_dict

LABELS = CORPUS_LABEL_SETS["ravdess"]
SPEECH_LLM = {
    "qformer": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
    "attention_dim": 8,
    "head_hidden": 16,
    "feature_cache": "auto",  # resolved into the built model's config, never into the member's recipe
}


def tiny_recipe(member: str, whisper, llama) -> dict:
    models = {
        "s1": {"encoder": str(whisper), "head_hidden": 16},
        "s2": {"whisper": str(whisper), "llm": str(llama), **SPEECH_LLM},
        "st1": {"whisper": str(whisper), "llm": str(llama), **SPEECH_LLM},
        "t1": {"model": str(llama)},
        "t2": {"llm": str(llama), "lora_layers": 1, "attention_dim": 8, "head_hidden": 16},
        "egemaps": {"head_hidden": 16},
    }
    return {"member": member, "model": models[member]}


@pytest.mark.parametrize("pretrained", [True, False])
@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_build_leaves_the_members_recipe_unchanged(name, pretrained, tiny_whisper_dir, tiny_llama_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ABHINAYA_FEATURE_CACHE", str(tmp_path / "features"))
    recipe = recipe_from_dict(tiny_recipe(name, tiny_whisper_dir, tiny_llama_dir))
    member = get_member(name)(recipe)
    before = to_dict(recipe)
    if not pretrained:
        # a build without pretrained weights is a prediction's: from a resolved recipe (which records the
        # architectures a pretrained build found)
        _, resolved = member.build(LABELS, pretrained=True)
        member = get_member(name)(resolved)
        recipe, before = resolved, to_dict(resolved)
    model, resolved = member.build(LABELS, pretrained=pretrained)
    assert member.recipe is recipe and to_dict(member.recipe) == before
    assert type(resolved) is type(recipe) and resolved.member == name
    assert model is not None
