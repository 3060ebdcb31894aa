from dataclasses import dataclass, field

import pytest

from abhinaya.recipes import (
    ConfigError,
    apply_overrides,
    from_dict,
    parse_override,
    read_yaml,
    to_dict,
    write_yaml,
)


@dataclass
class Inner:
    lr: float = 1e-3
    layers: list[int] | None = None


@dataclass
class Outer:
    name: str = "x"
    epochs: int = 3
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    extra: dict[str, float] = field(default_factory=dict)


def test_nested_mapping_and_defaults():
    cfg = from_dict(Outer, {"epochs": 5, "inner": {"lr": "1e-5", "layers": [2, 3]}})
    assert cfg.epochs == 5 and cfg.inner.lr == 1e-5 and cfg.inner.layers == [2, 3]
    assert cfg.name == "x" and cfg.flag is False
    assert to_dict(cfg) == {"name": "x", "epochs": 5, "flag": False, "inner": {"lr": 1e-5, "layers": [2, 3]}, "extra": {}}


@pytest.mark.parametrize(
    "data,message",
    [
        ({"epoch": 5}, "unknown key.*epoch.*accepts"),
        ({"inner": {"lrr": 1}}, r"inner\.lrr"),
        ({"epochs": "five"}, "epochs: expected an integer"),
        ({"epochs": 2.5}, "epochs: expected an integer"),
        ({"flag": "yes"}, "flag: expected true or false"),
        ({"inner": {"layers": [1, "a"]}}, r"inner\.layers\[1\]"),
        ({"inner": 3}, "inner: expected a mapping"),
        ({"name": None}, "name: may not be null"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides():
    assert parse_override("inner.layers=[1, 2]") == (["inner", "layers"], [1, 2])
    data = apply_overrides({"inner": {"lr": 1.0}}, ["inner.lr=0.5", "epochs=7", "name=abc", "extra.a=1"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.lr == 0.5 and cfg.epochs == 7 and cfg.name == "abc" and cfg.extra == {"a": 1.0}
    with pytest.raises(ConfigError, match="must look like"):
        parse_override("epochs")
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_yaml_roundtrip(tmp_path):
    cfg = from_dict(Outer, {"inner": {"layers": [1]}})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert from_dict(Outer, read_yaml(path)) == cfg
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        read_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        read_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="recipe not found"):
        read_yaml(tmp_path / "none.yaml")
