"""The system ``abhinaya demo`` runs: the shipped RAVDESS system recipe (``recipes/ravdess/abhinaya.yaml``), its
members shrunk to the demo's scale with dotted-key overrides.

``DEMO_OVERRIDES`` lists what the demo changes in each member's shipped recipe whatever the run (fewer epochs, a
smaller calibration sample, S1 lighter); ``model_overrides`` adds what each run decides (the models found and how
many layers they have). ``demo_system`` is the shipped system recipe with those overrides as each member's ``set``
list, and nothing else changed but the data, the transcription model and the members left out.

The ``recipes/`` folder sits at the root of a source checkout (the package installed editable from a clone);
``recipes_dir`` finds it next to the source tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import abhinaya

SYSTEM_RECIPE = "ravdess/abhinaya.yaml"
DEMO_S1_EPOCHS = 4
DEMO_T2_EPOCHS = 1
DEMO_SPEECH_LLM_EPOCHS = 2
# Training transcripts of T1's calibration (recipes/ravdess/t1.yaml uses 200).
DEMO_T1_CALIBRATION = 32
# Members that need no language model; --no-llm keeps only these.
ACOUSTIC_MEMBERS = ("s1", "egemaps")

# What the demo changes in each shipped member recipe, whatever the run.
DEMO_OVERRIDES: dict[str, list[str]] = {
    # S1 trains briefly: shorter crops, no tempo or noise augmentation, a smaller head, faster learning rates.
    "s1": [
        "audio.speed_perturb=0.0",
        "audio.noise_snr_db=null",
        "audio.train_crop_seconds=2.0",
        "audio.gain_jitter_db=3.0",
        "model.dropout=0.2",
        "model.head_hidden=128",
        "train.encoder_lr=5.0e-5",
        "train.head_lr=2.0e-3",
    ],
    "s2": [f"train.epochs={DEMO_SPEECH_LLM_EPOCHS}", f"train.average_epochs={DEMO_SPEECH_LLM_EPOCHS}"],
    "st1": [f"train.epochs={DEMO_SPEECH_LLM_EPOCHS}", f"train.average_epochs={DEMO_SPEECH_LLM_EPOCHS}"],
    "t1": [f"model.calibration_utterances={DEMO_T1_CALIBRATION}"],
    "t2": [f"train.epochs={DEMO_T2_EPOCHS}"],
    "egemaps": [],
}


def recipes_dir() -> Path:
    """The shipped ``recipes/`` folder of the source checkout the package runs from."""
    folder = Path(abhinaya.__file__).resolve().parents[2] / "recipes"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"the shipped recipes are not found at {folder}: the demo reads recipes/ of a source checkout "
            "(install the package from a clone with `pip install -e .`)"
        )
    return folder


def _value(value: Any) -> str:
    """A value as an override writes it: JSON, which YAML reads back unchanged (quoted strings keep paths intact)."""
    return json.dumps(value)


def model_overrides(
    member: str,
    *,
    s1_epochs: int = DEMO_S1_EPOCHS,
    encoder: str | None = None,
    whisper_layers: int | None = None,
    llm: str | None = None,
    llm_layers: int | None = None,
    feature_cache: str | Path | None = None,
) -> list[str]:
    """What one demo run sets in ``member``'s recipe: the models it found (``encoder``: the Whisper folder or
    offline name) and, for models smaller than the recipe's, all of their layers; S1's epochs; the demo's own
    feature cache."""
    from abhinaya.recipes import read_yaml

    if member not in DEMO_OVERRIDES:
        raise ValueError(f"the demo has no member {member!r}; it runs {', '.join(DEMO_OVERRIDES)}")
    recipe = read_yaml(recipes_dir() / "ravdess" / f"{member}.yaml")
    model = recipe.get("model", {})
    if member == "s1":
        return [f"model.encoder={_value(str(encoder))}", f"train.epochs={_value(s1_epochs)}"]
    if member in ("s2", "st1"):
        return [
            f"model.whisper={_value(str(encoder))}",
            f"model.whisper_layer={_value(min(model['whisper_layer'], whisper_layers))}",
            f"model.llm={_value(str(llm))}",
            f"model.layer={_value(min(model['layer'], llm_layers))}",
            f"model.feature_cache={_value(str(feature_cache))}",
        ]
    if member == "t1":
        return [f"model.model={_value(str(llm))}"]
    if member == "t2":
        layer = min(model["layer"], llm_layers)
        return [f"model.llm={_value(str(llm))}", f"model.layer={_value(layer)}",
                f"model.lora_layers={_value(min(model['lora_layers'], layer))}"]
    return [f"model.feature_cache={_value(str(feature_cache))}"]  # egemaps


def demo_system(
    *,
    manifest: str | Path,
    corpus: str | None,
    members: list[str],
    transcriber: dict[str, Any],
    **models: Any,
) -> dict[str, Any]:
    """The shipped system recipe as the demo runs it (a plain mapping, to be written as YAML): the prepared
    ``manifest`` (already split by speaker), ``members`` only, each with ``DEMO_OVERRIDES`` and
    ``model_overrides(member, **models)`` as its ``set`` list, and ``transcriber`` merged into ``transcribe``."""
    from abhinaya.recipes import read_yaml

    system = read_yaml(recipes_dir() / SYSTEM_RECIPE)
    system["data"] = {**system["data"], "manifest": str(manifest), "root": None, "corpus": corpus,
                      "dev_speakers": [], "test_speakers": []}
    system["transcribe"] = {**system["transcribe"], **transcriber}
    shipped = system["members"]
    system["members"] = {
        name: {
            "recipe": str(recipes_dir() / "ravdess" / shipped[name]["recipe"]),
            "set": [*DEMO_OVERRIDES[name], *model_overrides(name, **models)],
        }
        for name in members
    }
    if system["ensemble"].get("tiebreak") not in members:
        system["ensemble"]["tiebreak"] = members[0]
    return system


def prompt_texts() -> list[str]:
    """Every prompt text of the demo's LLM members as their shipped recipes set it (T1's system prompt, templates and
    label words; S2's and ST1's templates and instructions): the words a tiny stand-in LLM must know."""
    from abhinaya.runs import load_recipe

    texts: list[str] = []
    t1 = load_recipe(recipes_dir() / "ravdess" / "t1.yaml").model
    texts += [t1.system_prompt, t1.user_template, t1.reply_template, *t1.label_words.values()]
    for member in ("s2", "st1"):
        prompt = load_recipe(recipes_dir() / "ravdess" / f"{member}.yaml").prompt
        texts += [prompt.template, *prompt.instructions]
    return texts


__all__ = [
    "ACOUSTIC_MEMBERS",
    "DEMO_OVERRIDES",
    "DEMO_S1_EPOCHS",
    "DEMO_SPEECH_LLM_EPOCHS",
    "DEMO_T1_CALIBRATION",
    "DEMO_T2_EPOCHS",
    "SYSTEM_RECIPE",
    "demo_system",
    "model_overrides",
    "prompt_texts",
    "recipes_dir",
]
