"""The recipes ``abhinaya demo`` trains: the shipped YAML recipes, shrunk to the demo's scale with dotted-key
overrides.

``DEMO_RECIPES`` names the shipped file of each member; ``DEMO_OVERRIDES`` lists what the demo changes in it to stay
short (fewer epochs, a smaller calibration sample, S1 lighter than its RAVDESS recipe); ``run_overrides`` adds what
each run decides (the manifest, the models found, how many layers they have). ``demo_recipe`` is the shipped file plus
both lists, mapped onto the member's recipe class as ``abhinaya train --set`` would.

The ``recipes/`` folder sits at the root of a source checkout (the package installed editable from a clone);
``recipes_dir`` finds it next to the source tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import abhinaya
from abhinaya.labels import CORPUS_LABEL_SETS
from abhinaya.recipes import Recipe

# member -> its shipped recipe, relative to recipes/
DEMO_RECIPES: dict[str, str] = {
    "s1": "ravdess/s1.yaml",
    "s2": "ravdess/s2.yaml",
    "st1": "ravdess/st1.yaml",
    "t1": "meld/t1.yaml",
    "t2": "meld/t2.yaml",
}

DEMO_S1_EPOCHS = 4
DEMO_T2_EPOCHS = 3
DEMO_SPEECH_LLM_EPOCHS = 2
# Training transcripts of T1's calibration (recipes/meld/t1.yaml uses 1000).
DEMO_T1_CALIBRATION = 32
# Layers of the LLM that S2 and ST1 run, as their RAVDESS recipes (the first 1 and 2 of SmolLM2's 30).
SPEECH_LLM_LAYERS = {"s2": 1, "st1": 2}
# Whisper layer of S2 and ST1 and LLM layers of T2, as their recipes; a smaller model runs all of its own.
SPEECH_LLM_WHISPER_LAYER = 4
T2_LAYER, T2_LORA_LAYERS = 24, 6

# What the demo changes in each shipped recipe, whatever the run.
DEMO_OVERRIDES: dict[str, list[str]] = {
    # S1 trains briefly: shorter crops, no tempo or noise augmentation, a smaller head, faster learning rates, and
    # the epoch with the best dev score is kept.
    "s1": [
        "audio.speed_perturb=0.0",
        "audio.noise_snr_db=null",
        "audio.train_crop_seconds=2.0",
        "audio.gain_jitter_db=3.0",
        "model.dropout=0.2",
        "model.head_hidden=128",
        "train.encoder_lr=5.0e-5",
        "train.head_lr=2.0e-3",
        "train.keep=best",
    ],
    "s2": [],
    "st1": [],
    "t1": [f"model.calibration_utterances={DEMO_T1_CALIBRATION}"],
    "t2": [],
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


def shipped_recipe_path(member: str) -> Path:
    if member not in DEMO_RECIPES:
        raise ValueError(f"the demo has no recipe for member {member!r}; it runs {', '.join(DEMO_RECIPES)}")
    path = recipes_dir() / DEMO_RECIPES[member]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped recipe of {member} is missing from {recipes_dir()}")
    return path


def _value(value: Any) -> str:
    """A value as an override writes it: JSON, which YAML reads back unchanged (quoted strings keep paths intact)."""
    return json.dumps(value)


def run_overrides(
    member: str,
    *,
    manifest: str | Path,
    corpus: str,
    progress: bool,
    epochs: int | None = None,
    encoder: str | None = None,
    whisper: str | None = None,
    whisper_layers: int | None = None,
    llm: str | None = None,
    llm_layers: int | None = None,
    feature_cache: str | Path | None = None,
) -> list[str]:
    """What one demo run sets in ``member``'s recipe: the manifest it prepared (already split by speaker, so the
    recipe's dev speakers are not moved again), the corpus (null for a layout without a label set), the progress
    bars, the epochs, the models it found and, for models smaller than the recipe's, all of their layers."""
    if member not in DEMO_RECIPES:
        raise ValueError(f"the demo has no recipe for member {member!r}; it runs {', '.join(DEMO_RECIPES)}")
    overrides = [
        f"data.manifest={_value(str(manifest))}",
        f"data.corpus={_value(corpus if corpus in CORPUS_LABEL_SETS else None)}",
        f"train.progress={_value(progress)}",
    ]
    if member in ("s1", "s2", "st1"):
        overrides.append("data.dev_speakers=[]")
    if member == "s1":
        overrides += [f"model.encoder={_value(str(encoder))}", f"train.epochs={_value(epochs)}"]
    elif member in ("s2", "st1"):
        overrides += [
            f"model.whisper={_value(str(whisper))}",
            f"model.whisper_layer={_value(min(SPEECH_LLM_WHISPER_LAYER, whisper_layers))}",
            f"model.llm={_value(str(llm))}",
            f"model.layer={_value(min(SPEECH_LLM_LAYERS[member], llm_layers))}",
            f"model.feature_cache={_value(str(feature_cache))}",
            f"train.epochs={_value(epochs)}",
            f"train.average_epochs={_value(min(3, epochs))}",
        ]
    elif member == "t1":
        overrides.append(f"model.model={_value(str(llm))}")
    elif member == "t2":
        layer = min(T2_LAYER, llm_layers)
        overrides += [
            f"model.llm={_value(str(llm))}",
            f"model.layer={_value(layer)}",
            f"model.lora_layers={_value(min(T2_LORA_LAYERS, layer))}",
            f"train.epochs={_value(epochs)}",
        ]
    return overrides


def demo_recipe(member: str, **run: Any) -> Recipe:
    """``member``'s shipped recipe with ``DEMO_OVERRIDES[member]`` and ``run_overrides(member, **run)``."""
    from abhinaya.runs import load_recipe

    return load_recipe(shipped_recipe_path(member), [*DEMO_OVERRIDES[member], *run_overrides(member, **run)])


def prompt_texts() -> list[str]:
    """Every prompt text of the demo's LLM members as their shipped recipes set it (T1's system prompt, templates and
    label words; S2's and ST1's templates and instructions): the words a tiny stand-in LLM must know."""
    from abhinaya.runs import load_recipe

    texts: list[str] = []
    t1 = load_recipe(shipped_recipe_path("t1")).model
    texts += [t1.system_prompt, t1.user_template, t1.reply_template, *t1.label_words.values()]
    for member in ("s2", "st1"):
        prompt = load_recipe(shipped_recipe_path(member)).prompt
        texts += [prompt.template, *prompt.instructions]
    return texts


__all__ = [
    "DEMO_OVERRIDES",
    "DEMO_RECIPES",
    "DEMO_S1_EPOCHS",
    "DEMO_SPEECH_LLM_EPOCHS",
    "DEMO_T1_CALIBRATION",
    "DEMO_T2_EPOCHS",
    "SPEECH_LLM_LAYERS",
    "demo_recipe",
    "prompt_texts",
    "recipes_dir",
    "run_overrides",
    "shipped_recipe_path",
]
