"""The modality vocabulary: kinds, per-modality specs and a data set's schema.

A data set declares a :class:`Schema`: one :class:`ModalitySpec` per modality
(its name, its :class:`ModalityKind`, the shape of one step, its sampling rate)
and a :class:`TargetSpec` for the labels.  Everything downstream (collate,
encoders, fusion) reads the schema instead of guessing from tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from polymodal.config import Config, param
from polymodal.errors import unknown_name_error


class ModalityKind(StrEnum):
    """What a modality is; decides its decoder, its collate rule and its encoders.

    Value layout of one example (after decoding), and of a batch:

    ========== ============================ ===================================
    kind       one example                  batch ``values``
    ========== ============================ ===================================
    text       ``str``                      ``list[str]`` of length B
    image      (3, H, W) float              (B, 3, H, W)
    audio      (T,) float mono waveform     (B, T) padded, with lengths/mask
    video      (T, 3, H, W) float frames    (B, T, 3, H, W) padded
    timeseries (T, C) float                 (B, T, C) padded, optional timestamps
    tabular    (D,) float                   (B, D)
    features   (D,) or (T, D) float         (B, D) or (B, T, D) padded
    ========== ============================ ===================================
    """

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    TIMESERIES = "timeseries"
    TABULAR = "tabular"
    FEATURES = "features"

    @classmethod
    def parse(cls, value: str | ModalityKind) -> ModalityKind:
        if isinstance(value, ModalityKind):
            return value
        try:
            return cls(value)
        except ValueError:
            raise unknown_name_error("modality kind", value, [k.value for k in cls]) from None

    @property
    def is_sequence(self) -> bool:
        """Kinds whose examples have a time axis (dim 0) of varying length."""
        return self in (ModalityKind.AUDIO, ModalityKind.VIDEO, ModalityKind.TIMESERIES)


TASKS = ("classification", "regression", "multilabel", "none")

#: Units a time series' ``timestamp`` column may be written in (``ModalitySpec.time_unit``).
TIME_UNITS = ("s", "ms", "us", "ns")


@dataclass(frozen=True)
class ModalitySpec(Config):
    """One modality of a data set.

    Args:
        name: key of this modality in samples and batches (e.g. ``"phone"``).
        kind: a :class:`ModalityKind`.
        shape: shape of one step, without the time axis: ``(3, H, W)`` for images and
            video frames, ``(C,)`` for time series, ``(D,)`` for tabular/features, ``()``
            for audio samples; ``None`` for text.  Used to zero-fill a batch in which the
            modality is missing everywhere.
        sample_rate: steps per second for audio (Hz), video (fps) and time series.
        sequence: for ``features``: whether examples are (T, D) sequences.
        description: one line for ``polymodal datasets info``.
        channels: for ``timeseries``: the channel (column) names, in the order of the
            values' C axis.  A file is read by these names, so its columns may come in any
            order; one that lacks a channel is an error.  ``None``: every numeric column
            but the timestamp, in file order (schemas saved before channels were recorded).
        time_unit: for ``timeseries``: the unit of a file's ``timestamp`` column, one of
            :data:`TIME_UNITS` (``None``: ``"ms"``).  With ``sample_rate`` set, a file
            whose timestamps imply another rate is an error.
        length: for ``timeseries``: the number of steps of every training example, when
            they were fixed-length windows (``None``: they vary).  A series shorter than
            half of it is an error.
        columns: the manifest column(s) this modality is read from, as training read
            them (``None``: the column named ``name``, or for ``tabular`` every numeric
            column no other modality reads).

    Training records these in the run's ``schema.json`` (a manifest's ``channels``,
    ``time_unit``, ``sample_rate`` and ``length`` are inferred from its first files), so
    ``predict`` reads new data as the model was trained: an image is resized to ``shape``,
    a time series' channels are read by name and its rate and length checked.
    """

    name: str
    kind: ModalityKind
    shape: tuple[int, ...] | None = param(None, ge=0)
    sample_rate: float | None = param(None, gt=0)
    sequence: bool = False
    description: str = ""
    channels: tuple[str, ...] | None = None
    time_unit: str | None = None
    length: int | None = param(None, ge=1)
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise ValueError(f"ModalitySpec.name must be a non-empty string, got {self.name!r}")
        series = {"channels": self.channels, "time_unit": self.time_unit, "length": self.length}
        if self.kind is not ModalityKind.TIMESERIES:
            given = [k for k, v in series.items() if v is not None]
            if given:
                raise ValueError(
                    f"ModalitySpec {self.name!r} (kind {self.kind.value!r}) sets "
                    f"{', '.join(given)}, which only a 'timeseries' modality has. Remove it."
                )
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise ValueError(
                f"ModalitySpec {self.name!r}: "
                f"{unknown_name_error('time_unit', self.time_unit, TIME_UNITS)}"
            )
        for key, names in (("channels", self.channels), ("columns", self.columns)):
            if names is None:
                continue
            dupes = sorted({n for n in names if names.count(n) > 1})
            if not names or dupes or not all(names):
                raise ValueError(
                    f"ModalitySpec {self.name!r}: '{key}' must list unique non-empty names; "
                    f"got {list(names)}."
                )
        if self.channels is not None and self.shape not in (None, (len(self.channels),)):
            raise ValueError(
                f"ModalitySpec {self.name!r} has {len(self.channels)} channels "
                f"{list(self.channels)} but shape {self.shape}; a time series' shape is "
                f"(channels,): ({len(self.channels)},)."
            )

    @property
    def is_sequence(self) -> bool:
        return self.kind.is_sequence or (self.kind is ModalityKind.FEATURES and self.sequence)


@dataclass(frozen=True)
class TargetSpec(Config):
    """The label of a data set.

    Args:
        task: ``"classification"``, ``"regression"``, ``"multilabel"``, or ``"none"`` for
            unlabelled data (retrieval pairs such as Flickr8k).
        num_classes: classes (classification) or labels (multilabel); 1 for regression;
            0 for ``"none"``.
        class_names: names of the classes in index order, when known.
        name: the label's column/field name.
    """

    task: str = "classification"
    num_classes: int = param(2, ge=0)
    class_names: tuple[str, ...] | None = None
    name: str = "label"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise unknown_name_error("task", self.task, list(TASKS))
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"TargetSpec has num_classes={self.num_classes} but "
                f"{len(self.class_names)} class_names"
            )


@dataclass(frozen=True)
class Schema(Config):
    """The modalities and target of a data set; modalities are kept in a fixed order."""

    modalities: tuple[ModalitySpec, ...]
    target: TargetSpec = field(default_factory=TargetSpec)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [m.name for m in self.modalities]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Schema has duplicate modality names: {dupes}")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def __getitem__(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(
            f"Modality {name!r} is not in this schema; modalities: {', '.join(self.names)}"
        )

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.modalities)

    def select(self, names: list[str] | tuple[str, ...]) -> Schema:
        """A schema with only ``names`` (in the given order)."""
        for n in names:
            if n not in self:
                raise unknown_name_error("modality", n, self.names)
        return Schema(tuple(self[n] for n in names), self.target)
