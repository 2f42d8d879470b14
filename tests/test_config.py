"""The one config mechanism (polymodal.config): coercion by type hint, keys, ranges, YAML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pytest

from polymodal.config import (
    Config,
    NotFiniteError,
    apply_overrides,
    param,
    parse_override,
    plain,
    read_config_file,
)
from polymodal.errors import did_you_mean, unknown_name_error


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, kw_only=True)
class Inner(Config):
    rate: float = param(0.5, ge=0, lt=1)
    steps: int | None = param(None, ge=1)
    colour: Colour = Colour.RED
    mode: Literal["fast", "slow"] = "fast"


@dataclass(frozen=True, kw_only=True)
class Outer(Config):
    name: str = "run"
    inner: Inner = field(default_factory=Inner)
    sections: dict[str, Inner] = field(default_factory=dict)
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.9, 0.99)
    weights: dict[str, float] = param(default_factory=dict, ge=0, le=1)
    options: dict[str, Any] = field(default_factory=dict)
    required: int


def test_round_trip_through_plain_data_and_yaml() -> None:
    cfg = Outer.from_dict(
        {
            "required": 3,
            "inner": {"rate": "1e-3", "colour": "blue", "steps": 4.0},
            "sections": {"a": {"mode": "slow"}},
            "sizes": [3, 4, 5],
            "weights": {"x": 1},
            "options": {"list": (1, 2), "nested": {"k": None}},
        }
    )
    assert cfg.inner == Inner(rate=1e-3, colour=Colour.BLUE, steps=4)
    assert isinstance(cfg.inner.steps, int) and cfg.sections["a"].mode == "slow"
    assert cfg.sizes == (3, 4, 5) and cfg.weights == {"x": 1.0}
    d = cfg.to_dict()
    assert d["inner"]["colour"] == "blue" and d["sizes"] == [3, 4, 5]  # plain YAML data
    assert d["options"] == {"list": [1, 2], "nested": {"k": None}}
    assert Outer.from_dict(d) == cfg
    assert Outer.from_yaml(cfg.to_yaml()) == cfg


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"required": 1, "inner": {"rat": 0.1}},
            r"Unknown config key 'inner.rat'. Valid keys at "
            r"'inner': rate, steps, colour, mode. Did you mean 'rate'\?",
        ),
        (
            {"required": 1, "nmae": "x"},
            r"Unknown config key 'nmae'. Valid keys at the top level"
            r".*Did you mean 'name'\?",
        ),
        ({}, r"The config is missing the required key\(s\) 'required'"),
        ({"required": True}, r"Config key 'required' must be int, got bool True"),
        ({"required": 1.5}, r"Config key 'required' must be int, got float 1.5"),
        ({"required": 1, "inner": {"rate": 1.0}}, r"'inner.rate' must be >= 0 and < 1, got 1.0"),
        ({"required": 1, "inner": {"rate": math.nan}}, r"'inner.rate' must be a finite number"),
        ({"required": 1, "inner": {"rate": "fast"}}, r"'inner.rate' must be float, got str"),
        ({"required": 1, "inner": {"steps": 0}}, r"'inner.steps' must be >= 1, got 0"),
        (
            {"required": 1, "inner": {"colour": "green"}},
            r"'inner.colour' must be one of \['red', 'blue'\], got 'green'",
        ),
        (
            {"required": 1, "inner": {"mode": "fats"}},
            r"'inner.mode' must be one of \['fast', 'slow'\], got 'fats'. Did you mean 'fast'\?",
        ),
        ({"required": 1, "sections": {"a": {"mdoe": 1}}}, r"Unknown config key 'sections.a.mdoe'"),
        ({"required": 1, "weights": {"x": 2}}, r"'weights.x' must be >= 0 and <= 1, got 2.0"),
        ({"required": 1, "pair": [0.9]}, r"'pair' must be tuple\[float, float\]"),
        ({"required": 1, "sizes": "12"}, r"'sizes' must be tuple\[int, \.\.\.\], got str"),
        ({"required": 1, "options": {"x": math.inf}}, r"'options.x' must be a finite number"),
        ({"required": 1, "options": {"x": object()}}, r"'options.x' must hold plain data"),
        ({"required": 1, "inner": [1]}, r"'inner' must be a mapping of keys to values, got list"),
        ({1: 2}, r"has non-string keys \[1\]"),
    ],
)
def test_errors_name_the_key_the_expectation_and_the_value(
    data: dict[Any, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Outer.from_dict(data)


def test_direct_construction_is_checked_and_coerced() -> None:
    with pytest.raises(ValueError, match=r"'Inner.rate' must be >= 0 and < 1, got 2.0"):
        Inner(rate=2.0)
    with pytest.raises(ValueError, match=r"'Inner.rate' must be a finite number, got inf"):
        Inner(rate=math.inf)
    cfg = Outer(required=1, inner={"rate": 0.25}, sizes=[7])  # type: ignore[arg-type]
    assert cfg.inner == Inner(rate=0.25) and cfg.sizes == (7,)


def test_replace_with_dotted_keys_is_checked() -> None:
    cfg = Outer(required=1)
    new = cfg.replace(**{"inner.rate": 0.1, "sections.b.mode": "slow", "name": "x"})
    assert new.inner.rate == 0.1 and new.sections["b"].mode == "slow" and new.name == "x"
    assert cfg.inner.rate == 0.5  # frozen: the original is unchanged
    with pytest.raises(ValueError, match=r"Unknown config key 'inner\.rat'"):
        cfg.replace(**{"inner.rat": 0.1})


def test_overrides_parse_values_as_yaml() -> None:
    assert parse_override("a.b=3.0e-4") == ("a.b", pytest.approx(3e-4))
    assert parse_override("a.b=3e-4") == ("a.b", "3e-4")  # YAML 1.1; float fields coerce it
    assert parse_override("a=[x,y]") == ("a", ["x", "y"])
    assert parse_override("a=") == ("a", None)
    d = apply_overrides({"a": {"b": 1}}, ["a.c=2", "d.e=true"])
    assert d == {"a": {"b": 1, "c": 2}, "d": {"e": True}}
    with pytest.raises(ValueError, match="must look like key=value"):
        parse_override("novalue")
    with pytest.raises(ValueError, match=r"'a.b' is a value \(1\), not a section"):
        apply_overrides({"a": {"b": 1}}, ["a.b.c=2"])
    with pytest.raises(ValueError, match="has an empty part"):
        apply_overrides({}, ["a..b=1"])


def test_files_default_name_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("required: 2\ninner: {rate: 0.2}\n")
    cfg = Outer.load(path, ["inner.mode=slow"])
    assert cfg.name == "exp" and cfg.inner.mode == "slow" and cfg.required == 2
    assert Outer.from_yaml(path) == Outer.from_yaml(str(path)) == Outer.load(path)
    assert Outer.load(path).inner.mode == "fast"
    assert read_config_file(path, default_name=False) == {"required": 2, "inner": {"rate": 0.2}}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Outer.load(tmp_path / "none.yaml")
    path.write_text("required: [1\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        Outer.load(path)


def test_plain_refuses_what_yaml_cannot_hold() -> None:
    assert plain((1, {"a": Colour.RED}), "k") == [1, {"a": "red"}]
    with pytest.raises(ValueError, match=r"'k.x' must be a finite number"):
        plain({"x": math.nan}, "k")


def test_one_suggestion_wording() -> None:
    assert did_you_mean("fusoin", ["fusion", "head"]) == " Did you mean 'fusion'?"
    assert did_you_mean("zzz", ["fusion"]) == ""
    err = unknown_name_error("fusion", "lat", ["late", "early"])
    assert str(err) == "Unknown fusion 'lat'. Valid fusions: early, late. Did you mean 'late'?"


@pytest.mark.parametrize(
    ("override", "key", "shown"),
    [
        ("optim.weight_decay=nan", "optim.weight_decay", "nan"),
        ("optim.weight_decay=.NaN", "optim.weight_decay", "nan"),
        ("optim.grad_clip=nan", "optim.grad_clip", "nan"),  # float | None: not "float or null"
        ("optim.grad_clip=-.inf", "optim.grad_clip", "-inf"),
        ("optim.lr=inf", "optim.lr", "inf"),
        ("optim.lr=.inf", "optim.lr", "inf"),
    ],
)
def test_nan_and_inf_overrides_of_a_run_config_fail_naming_the_key(
    override: str, key: str, shown: str
) -> None:
    from polymodal.training.config import load_config

    config = Path(__file__).resolve().parents[1] / "configs" / "har_phone_watch.yaml"
    with pytest.raises(
        NotFiniteError, match=rf"Config key '{key}' must be a finite number, got {shown}\."
    ):
        load_config(config, [override])


def test_every_float_field_of_every_config_refuses_nan_and_inf() -> None:
    """One check in the mechanism: no config class can hold a NaN/inf float, by construction."""
    import dataclasses
    import typing

    import polymodal.data.decode
    import polymodal.featurize.pipeline
    import polymodal.joint.train
    import polymodal.models.context
    import polymodal.training.config  # noqa: F401 - defines the config classes

    def subclasses(cls: type) -> list[type]:
        return [s for sub in cls.__subclasses__() for s in (sub, *subclasses(sub))]

    checked = []
    for cls in subclasses(Config):
        fields = dataclasses.fields(cls)
        if cls.__module__.startswith("tests") or any(
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in fields
        ):
            continue  # test classes; classes with required fields are built from data above
        hints = typing.get_type_hints(cls)
        for f in fields:
            if hints[f.name] in (float, float | None):
                for bad in (math.nan, math.inf):
                    with pytest.raises(NotFiniteError, match=rf"'{cls.__name__}\.{f.name}'"):
                        cls(**{f.name: bad})
                checked.append(f"{cls.__name__}.{f.name}")
    assert {"OptimConfig.lr", "OptimConfig.weight_decay", "OptimConfig.grad_clip"} <= set(checked)
    assert "DecodeLimits.max_audio_seconds" in checked


def test_config_files_that_are_not_text_or_do_not_validate_are_named(tmp_path: Path) -> None:
    from polymodal.training import load_config

    binary = tmp_path / "cfg.yaml"
    binary.write_bytes(b"\xff\xd8\xff\xe0 not yaml")
    with pytest.raises(ValueError, match=r"Config file '.*cfg\.yaml' is not UTF-8 text \(byte 0"):
        load_config(binary)
    partial = tmp_path / "part.yaml"
    partial.write_text("seed: 1\n")
    with pytest.raises(ValueError, match=r"Config file '.*part\.yaml': .*missing the required"):
        load_config(partial)


@dataclass(frozen=True, kw_only=True)
class Wider(Inner):
    extra: int = 3


@dataclass(frozen=True, kw_only=True)
class HoldsWider(Config):
    inner: Wider = field(default_factory=Wider)


def test_a_base_config_fills_a_subclass_field() -> None:
    """An ``Inner`` where a ``Wider`` (its subclass) is expected keeps its values and takes
    the subclass's defaults; an unrelated config is still refused."""
    held = HoldsWider(inner=Inner(rate=0.25, mode="slow"))  # type: ignore[arg-type]
    assert held.inner == Wider(rate=0.25, mode="slow", extra=3)
    assert type(held.inner) is Wider
    with pytest.raises(ValueError, match=r"'HoldsWider\.inner' must be a mapping"):
        HoldsWider(inner=Outer(required=1))  # type: ignore[arg-type]
