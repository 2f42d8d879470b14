"""Configs of joint embedding (contrastive) runs: ``polymodal train`` with ``task: contrastive``.

A joint run trains the projections of a :class:`~polymodal.models.joint.JointEmbeddingModel`
on one or more pair sets (ImageBind-style binding when there are several) with
:func:`~polymodal.training.contrastive.train_contrastive`.  Its YAML is
:class:`JointTrainConfig` serialised::

    task: contrastive            # what tells `polymodal train` this is a joint run
    name: flickr8k
    seed: 0
    model:                       # polymodal.models.joint.JointConfig, modalities by name
      dim: 512
      anchor: image
      modalities:
        image: {spec: {kind: image, shape: [3, 224, 224]},
                encoder: {name: efficientnet_lite0}, projection: residual}
        text: {spec: {kind: text}, encoder: {name: minilm}, projection: residual}
    pairs:                       # PairSetConfig by name: (anchor, other) pairs of a data set
      flickr8k: {dataset: flickr8k, other: text, val_split: val, test_split: test}
    optim: {epochs: 20, batch_size: 1024, lr: 2.0e-3}   # ContrastiveConfig (seed: top level)

Modalities and pair sets are mappings keyed by name (not lists) so that every entry has
a dotted path for ``key=value`` overrides: ``model.modalities.text.dropout=0.3``,
``pairs.flickr8k.limit=40``, ``optim.lr=1e-3``.  :func:`load_joint_config` checks every
key and type before anything runs, like :func:`polymodal.training.config.load_config`:
an unknown key fails listing the valid keys at its level with a close-match suggestion.

:func:`load_train_config` reads any ``polymodal train`` YAML: a file with
``task: contrastive`` gives a :class:`JointTrainConfig`, any other file (no ``task`` key)
the classifier :class:`~polymodal.training.config.TrainConfig`, unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polymodal.models.config import _suggest
from polymodal.models.joint import JointConfig
from polymodal.training.config import (
    TrainConfig,
    _check_keys,
    _check_mapping,
    _coerce,
    _dataclass_from_dict,
    _hints,
    _parse_yaml_mapping,
    _plain,
    _set_dotted,
    apply_overrides,
    load_config,
)
from polymodal.training.contrastive import ContrastiveConfig

#: Values of the top-level ``task`` key; a config without ``task`` is a classifier run.
TASKS = ("contrastive",)
_MODALITY_KEYS = ("spec", "encoder", "projection", "hidden_dim", "layers", "dropout", "input_norm")
#: ContrastiveConfig fields settable under ``optim`` (its ``seed`` is the run's ``seed``).
OPTIM_KEYS = tuple(f.name for f in dataclasses.fields(ContrastiveConfig) if f.name != "seed")


@dataclass(frozen=True)
class PairSetConfig:
    """One pair set: (anchor, other) pairs from the examples of a built-in data set.

    Each example gives one anchor row and one other row, or, when the other modality is
    text and the example's ``meta["captions"]`` lists several captions (Flickr8k), one
    other row per caption, all paired with the example's anchor row.

    Args:
        dataset: a built-in data set name (``polymodal datasets list``).
        other: the model modality paired with the anchor; also the data set's modality
            name.
        anchor: the anchor side; ``None`` means the model's anchor.
        root: folder holding the data set (``None``: ``$POLYMODAL_DATA``, then the cache).
        options: keyword options of the data set's loader (e.g. ``image_size: 128``).
        train_split: split whose pairs train the projections.
        val_split: split for early stopping and the reported validation metrics
            (``None``: this set is not validated).  Never the test split.
        test_split: split evaluated once at the end (``None``: none).
        limit: only the first ``limit`` examples of each split (smoke tests, quick runs).
        embed_batch_size: examples per encoder forward pass when computing features.
    """

    dataset: str
    other: str
    anchor: str | None = None
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    limit: int | None = None
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("pairs: 'dataset' must name a built-in data set, got ''.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(
                f"pairs: 'limit' must be >= 1 (examples per split) or null, got {self.limit}."
            )
        if self.embed_batch_size < 1:
            raise ValueError(
                f"pairs: 'embed_batch_size' must be >= 1, got {self.embed_batch_size}."
            )
        if self.val_split is not None and self.val_split == self.test_split:
            raise ValueError(
                f"pairs: 'val_split' and 'test_split' are both {self.val_split!r}; early "
                "stopping on the test split would make its metrics optimistic. Use another "
                "validation split or val_split=null."
            )

    def splits(self) -> dict[str, str | None]:
        """Role (``train``, ``val``, ``test``) -> split name (``None``: unused)."""
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}


@dataclass(frozen=True)
class JointTrainConfig:
    """A joint embedding run (``task: contrastive``).

    Args:
        model: the joint space (:class:`~polymodal.models.joint.JointConfig`).
        pairs: the pair sets by name (at least one); each trains (anchor, other).
        optim: :class:`~polymodal.training.contrastive.ContrastiveConfig` (its ``seed`` is
            this config's ``seed``).
        task: always ``"contrastive"``.
        name: the run's name; the default output folder is ``runs/<name>``.
        seed: seeds the projections' initialisation, the pairing and the shuffling.
        output_dir: the run folder (``None``: ``runs/<name>``); the checkpoint goes to
            ``<run>/checkpoints/best``.
        feature_cache: root of the cached encoder features (``None``: the user cache,
            ``~/.cache/polymodal/features``).
    """

    model: JointConfig
    pairs: dict[str, PairSetConfig]
    optim: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    task: str = "contrastive"
    name: str = "run"
    seed: int = 0
    output_dir: str | None = None
    feature_cache: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"task must be one of {list(TASKS)} for a joint run, got {self.task!r}."
            )
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ValueError(
                f"name must be a non-empty folder name without slashes, got {self.name!r}"
            )
        if not self.pairs:
            raise ValueError(
                "pairs: a joint run needs at least one pair set, e.g. pairs: {flickr8k: "
                "{dataset: flickr8k, other: text}}."
            )
        names = list(self.model.names)
        for key, p in self.pairs.items():
            anchor = self.anchor_of(key)
            for role, m in (("anchor", anchor), ("other", p.other)):
                if m not in names:
                    raise ValueError(
                        f"pairs.{key}.{role} is {m!r}, which is not a modality of the model "
                        f"{names}." + _suggest(str(m), names)
                    )
            if anchor == p.other:
                raise ValueError(
                    f"pairs.{key}: anchor and other are both {anchor!r}; a pair set relates "
                    "two different modalities."
                )
        if self.optim.seed != self.seed:
            object.__setattr__(self, "optim", dataclasses.replace(self.optim, seed=self.seed))

    def anchor_of(self, pair: str) -> str:
        """The anchor modality of pair set ``pair`` (the model's anchor unless set)."""
        anchor = self.pairs[pair].anchor
        return str(self.model.anchor) if anchor is None else anchor

    @property
    def run_dir(self) -> Path:
        """The run folder: ``output_dir``, or ``runs/<name>``."""
        return Path(self.output_dir) if self.output_dir is not None else Path("runs") / self.name

    @property
    def checkpoint_dir(self) -> Path:
        """``<run>/checkpoints/best``: the folder ``polymodal embed`` takes."""
        return self.run_dir / "checkpoints" / "best"

    def to_dict(self) -> dict[str, Any]:
        optim = {k: v for k, v in dataclasses.asdict(self.optim).items() if k != "seed"}
        return {
            "task": self.task,
            "name": self.name,
            "seed": self.seed,
            "output_dir": self.output_dir,
            "feature_cache": self.feature_cache,
            "model": model_to_dict(self.model),
            "pairs": {k: _plain(dataclasses.asdict(p)) for k, p in self.pairs.items()},
            "optim": _plain(optim),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JointTrainConfig:
        """Build from a plain dict, checking every key and type."""
        d = _check_mapping(d, "config")
        _check_keys(cls, d, "")
        missing = [k for k in ("model", "pairs") if k not in d]
        if missing:
            raise ValueError(
                f"The joint config has no {' or '.join(repr(m) for m in missing)} section; a "
                "joint run needs 'model' (the joint space) and 'pairs' (the pair sets). See "
                "configs/flickr8k.yaml."
            )
        kwargs: dict[str, Any] = {}
        hints = _hints(cls)
        for key, value in d.items():
            if key == "model":
                kwargs[key] = model_from_dict(value)
            elif key == "pairs":
                pairs = _check_mapping(value, "pairs")
                kwargs[key] = {
                    name: _dataclass_from_dict(PairSetConfig, p, f"pairs.{name}")
                    for name, p in pairs.items()
                }
            elif key == "optim":
                kwargs[key] = _optim_from_dict(value)
            else:
                kwargs[key] = _coerce(value, hints[key], key)
        return cls(**kwargs)


def model_to_dict(config: JointConfig) -> dict[str, Any]:
    """A :class:`JointConfig` as the YAML ``model`` section (modalities keyed by name)."""
    d = config.to_dict()
    modalities = {}
    for m in d["modalities"]:
        spec = {k: v for k, v in m["spec"].items() if k != "name"}
        modalities[m["spec"]["name"]] = _plain({**m, "spec": spec})
    return {"dim": d["dim"], "anchor": d["anchor"], "modalities": modalities}


def model_from_dict(value: Any) -> JointConfig:
    """The YAML ``model`` section -> :class:`JointConfig` (each modality's name is its key)."""
    d = _check_mapping(value, "model")
    _check_section_keys(d, ["dim", "anchor", "modalities"], "model")
    if "modalities" not in d:
        raise ValueError(
            "model has no 'modalities': list each modality by name, e.g. modalities: {image: "
            "{spec: {kind: image}, encoder: {name: efficientnet_lite0}}, text: {...}}."
        )
    mods = _check_mapping(d["modalities"], "model.modalities")
    entries = []
    for name, m in mods.items():
        where = f"model.modalities.{name}"
        m = _check_mapping(m, where)
        _check_section_keys(m, list(_MODALITY_KEYS), where)
        if "spec" not in m or "encoder" not in m:
            raise ValueError(f"{where} needs 'spec' (e.g. {{kind: image}}) and 'encoder'.")
        spec = dict(_check_mapping(m["spec"], f"{where}.spec"))
        if spec.setdefault("name", name) != name:
            raise ValueError(
                f"{where}.spec.name is {spec['name']!r}; a modality's name is its key "
                f"({name!r}): drop spec.name."
            )
        if "kind" not in spec:
            raise ValueError(f"{where}.spec needs a 'kind' (image, text, audio, ...).")
        entries.append({**m, "spec": spec})
    try:
        return JointConfig.from_dict(
            {k: v for k, v in {**d, "modalities": entries}.items()}, "model"
        )
    except (ValueError, TypeError, KeyError) as e:
        msg = e.args[0] if e.args else str(e)
        raise type(e)(msg if str(msg).startswith("model") else f"model: {msg}") from e


def _check_section_keys(d: Mapping[str, Any], valid: list[str], where: str) -> None:
    for key in d:
        if key not in valid:
            raise ValueError(
                f"Unknown config key '{where}.{key}'. Valid keys at '{where}': "
                f"{', '.join(valid)}." + _suggest(str(key), valid)
            )


def _optim_from_dict(value: Any) -> ContrastiveConfig:
    d = _check_mapping(value, "optim")
    if "seed" in d:
        raise ValueError(
            "Config key 'optim.seed' is not used: the run's top-level 'seed' seeds the "
            "pairing and shuffling too. Set seed=N instead."
        )
    _check_section_keys(d, list(OPTIM_KEYS), "optim")
    return _dataclass_from_dict(ContrastiveConfig, d, "optim")  # type: ignore[no-any-return]


def load_joint_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> JointTrainConfig:
    """Read a ``task: contrastive`` YAML, apply ``key=value`` overrides and validate it.

    ``name`` defaults to the file's stem.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a joint config, an unknown key, a wrong type or a bad value.
    """
    d = _read(path, overrides)
    if d.get("task") != "contrastive":
        raise ValueError(
            f"Config file {str(path)!r} is not a joint run: it needs 'task: contrastive' at "
            f"the top level (got task={d.get('task')!r})." + _suggest(str(d.get("task")), TASKS)
        )
    return JointTrainConfig.from_dict(d)


def load_train_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> TrainConfig | JointTrainConfig:
    """Any ``polymodal train`` YAML: ``task: contrastive`` -> :class:`JointTrainConfig`,
    no ``task`` key -> the classifier :class:`~polymodal.training.config.TrainConfig`
    (exactly :func:`~polymodal.training.config.load_config`)."""
    d = _read(path, overrides)
    if "task" not in d:
        return load_config(path, overrides)
    if d["task"] not in TASKS:
        raise ValueError(
            f"Config key 'task' must be one of {list(TASKS)} (a joint embedding run), or be "
            f"left out for a classifier run; got {d['task']!r}." + _suggest(str(d["task"]), TASKS)
        )
    return JointTrainConfig.from_dict(d)


def _read(path: str | os.PathLike[str], overrides: Sequence[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Config file {str(p)!r} does not exist.")
    d = _parse_yaml_mapping(p.read_text(), f"Config file {str(p)!r}")
    d.setdefault("name", p.stem)
    return apply_overrides(d, overrides)


def replace_dotted(config: JointTrainConfig, **changes: Any) -> JointTrainConfig:
    """A copy with dotted ``changes`` (``replace_dotted(c, **{"optim.lr": 1e-4})``)."""
    d = config.to_dict()
    for key, value in changes.items():
        _set_dotted(d, key, value)
    return JointTrainConfig.from_dict(d)


__all__ = [
    "OPTIM_KEYS",
    "TASKS",
    "JointTrainConfig",
    "PairSetConfig",
    "load_joint_config",
    "load_train_config",
    "model_from_dict",
    "model_to_dict",
    "replace_dotted",
]
