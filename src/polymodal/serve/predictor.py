"""``POST /predict``: a supervised run's inputs read from a request, its outputs per row.

A request's ``inputs`` map a modality name (or, for a ``tabular`` modality, its column
names) to a value: text as a string, ``features``/``tabular`` as numbers (a list; a
``tabular`` modality also takes an object of column -> number), files (image, audio, video,
time series, feature files) as uploads (see :mod:`polymodal.serve.uploads`).  A modality
left out is missing (its presence mask is false), as an empty manifest cell is.  The
values are decoded with the library's decoders and checked by
:func:`~polymodal.data.collate.collate` with the run's schema before they are queued, so a
bad request never reaches (or fails) a batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polymodal.data.collate import collate
from polymodal.data.decode import decode_features, decode_text
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema
from polymodal.data.sample import Sample
from polymodal.errors import did_you_mean
from polymodal.inference import TrainedModel, predict_batches
from polymodal.serve.errors import RequestError
from polymodal.serve.uploads import Upload, allowed_suffixes, decode_upload, from_json

FILE_KINDS = (
    ModalityKind.IMAGE,
    ModalityKind.AUDIO,
    ModalityKind.VIDEO,
    ModalityKind.TIMESERIES,
)


class Predictor:
    """A supervised run, ready to read requests and predict batches of them.

    Args:
        trained: from :func:`~polymodal.inference.load_trained`.
        name: how requests and the page name it.
        device: where the model runs.
        max_upload_bytes: the size limit of one uploaded file.
    """

    def __init__(
        self, trained: TrainedModel, name: str, device: str = "cpu", max_upload_bytes: int = 0
    ) -> None:
        if trained.task != "supervised":
            raise ValueError(
                f"{trained.path} is a {trained.task!r} run; /predict serves supervised runs."
            )
        encoders = trained.config["model"]["encoders"]
        self.schema: Schema = trained.schema.select(
            [m for m in trained.schema.names if m in encoders]
        )
        self.name = name
        self.path = trained.path
        self.device = torch.device(device)
        self.model = trained.model.to(self.device).eval()
        self.precision = trained.precision
        self.max_upload_bytes = max_upload_bytes
        target = self.schema.target
        self.task = target.task
        self.class_names = list(target.class_names or [str(i) for i in range(target.num_classes)])

    # ----------------------------------------------------------------- describing inputs

    def fields(self) -> list[dict[str, Any]]:
        """One entry per input, for the page's form and ``GET /models``."""
        out = []
        for spec in self.schema.modalities:
            entry: dict[str, Any] = {
                "name": spec.name,
                "kind": spec.kind.value,
                "shape": list(spec.shape) if spec.shape is not None else None,
                "input": _input_of(spec),
            }
            if spec.kind is ModalityKind.TABULAR and spec.columns:
                entry["columns"] = list(spec.columns)
            if entry["input"] == "file" or spec.kind is ModalityKind.FEATURES:
                entry["accept"] = list(allowed_suffixes(spec.kind))
            out.append(entry)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "classes": self.class_names if self.task != "regression" else None,
            "inputs": self.fields(),
        }

    # ------------------------------------------------------------------- reading inputs

    def parse(self, inputs: Mapping[str, Any], uploads: Mapping[str, Upload]) -> Sample:
        """A :class:`Sample` of one request; a bad value is a :class:`RequestError`.

        ``inputs`` hold JSON values (or multipart text fields), ``uploads`` the files.
        """
        aliases = {
            c: spec.name
            for spec in self.schema.modalities
            if spec.kind is ModalityKind.TABULAR
            for c in spec.columns or ()
        }
        known = set(self.schema.names) | set(aliases)
        for key in [*inputs, *uploads]:
            if key not in known:
                raise RequestError(
                    400,
                    f"inputs.{key}: the model has no input {key!r}; it takes "
                    f"{sorted(known)}.{did_you_mean(key, sorted(known))}",
                    f"inputs.{key}",
                )
        values: dict[str, Tensor | str | None] = {}
        stamps: dict[str, Tensor] = {}
        for spec in self.schema.modalities:
            field = f"inputs.{spec.name}"
            if spec.name in uploads:
                if spec.kind not in (*FILE_KINDS, ModalityKind.FEATURES):
                    raise RequestError(
                        400, f"{field}: a {spec.kind.value} input is not a file.", field
                    )
                value, ts = decode_upload(uploads[spec.name], spec)
                values[spec.name] = value
                if ts is not None:
                    stamps[spec.name] = ts
                continue
            if spec.kind is ModalityKind.TABULAR:
                values[spec.name] = self._tabular(spec, inputs, field)
                continue
            raw = inputs.get(spec.name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                values[spec.name] = None
            elif spec.kind is ModalityKind.TEXT:
                if not isinstance(raw, str):
                    raise RequestError(
                        400, f"{field}: text must be a string, got {type(raw).__name__}.", field
                    )
                values[spec.name] = _user_error(field, decode_text, raw, where=field)
            elif spec.kind is ModalityKind.FEATURES and not isinstance(raw, dict):
                values[spec.name] = self._features(spec, raw, field)
            elif spec.kind in (*FILE_KINDS, ModalityKind.FEATURES):
                upload = from_json(field, raw, spec.kind, self.max_upload_bytes)
                value, ts = decode_upload(upload, spec)
                values[spec.name] = value
                if ts is not None:
                    stamps[spec.name] = ts
            else:
                raise RequestError(
                    400, f"{field}: inputs of kind {spec.kind.value!r} are not served.", field
                )
        if all(v is None for v in values.values()):
            raise RequestError(
                400,
                f"inputs: give at least one of the model's inputs {self.schema.names}; a "
                "missing one is allowed, but not all.",
                "inputs",
            )
        sample = Sample("request", values, None, stamps)
        try:
            collate([sample], self.schema)  # the checks a batch would make, on this row alone
        except (TypeError, ValueError) as exc:
            field = next(
                (f"inputs.{m}" for m in self.schema.names if repr(m) in str(exc)), "inputs"
            )
            raise RequestError(400, f"{field}: {exc}", field) from None
        return sample

    def _features(self, spec: ModalitySpec, raw: Any, field: str) -> Tensor:
        if isinstance(raw, str):  # a multipart text field: JSON, never a path
            if not raw.lstrip().startswith("["):
                raise RequestError(
                    400, f"{field}: expected a JSON list of numbers, got {raw[:40]!r}.", field
                )
            raw = _user_error(field, json.loads, raw)
        if not isinstance(raw, list):
            raise RequestError(
                400, f"{field}: expected a list of numbers, got {type(raw).__name__}.", field
            )
        t = _user_error(field, decode_features, raw, where=field)
        want = 2 if spec.sequence else 1
        if t.dim() != want:
            raise RequestError(
                400,
                f"{field}: expected {'a (T, D) sequence' if spec.sequence else 'one vector'} "
                f"of numbers, got shape {tuple(t.shape)}.",
                field,
            )
        if spec.shape is not None and tuple(t.shape[-1:]) != tuple(spec.shape):
            raise RequestError(
                400,
                f"{field}: expected {spec.shape[0]} numbers (the model was trained on "
                f"{spec.shape[0]}-d features), got {t.shape[-1]}.",
                field,
            )
        return t

    def _tabular(self, spec: ModalitySpec, inputs: Mapping[str, Any], field: str) -> Tensor | None:
        columns = list(spec.columns or ())
        raw = inputs.get(spec.name)
        if raw is None and columns and any(c in inputs for c in columns):
            raw = {c: inputs[c] for c in columns if c in inputs}
        if raw is None:
            return None
        if isinstance(raw, dict):
            missing = [c for c in columns if raw.get(c) is None]
            if missing:
                raise RequestError(
                    400,
                    f"{field}: the columns {missing} are missing; give all of {columns}, or "
                    "none to leave the modality missing.",
                    f"inputs.{missing[0]}",
                )
            raw = [raw[c] for c in columns]
        if isinstance(raw, str):
            raw = _user_error(field, json.loads, raw) if raw.lstrip().startswith("[") else raw
        if not isinstance(raw, list):
            raise RequestError(400, f"{field}: expected a list of numbers.", field)
        numbers = []
        for i, x in enumerate(raw):
            name = f"inputs.{columns[i]}" if i < len(columns) else f"{field}[{i}]"
            try:
                number = float(x)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(x, bool) or not math.isfinite(number):
                raise RequestError(400, f"{name}: expected a finite number, got {x!r}.", name)
            numbers.append(number)
        if spec.shape is not None and len(numbers) != spec.shape[0]:
            raise RequestError(
                400, f"{field}: expected {spec.shape[0]} numbers, got {len(numbers)}.", field
            )
        return torch.tensor(numbers, dtype=torch.float32)

    # ----------------------------------------------------------------------- predicting

    def run_batch(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """One forward pass over ``samples``; one result dict per sample."""
        batch = collate(samples, self.schema)
        pred = predict_batches(self.model, [batch], self.device, self.precision)
        if pred is None:  # pragma: no cover - one batch always gives rows
            return []
        return [self._result(row) for row in pred.outputs]  # (N, K) logits

    def _result(self, logits: Tensor) -> dict[str, Any]:
        if self.task == "regression":
            return {"task": "regression", "value": float(logits[0])}
        if self.task == "multilabel":
            probs = torch.sigmoid(logits).tolist()
            chosen = [n for n, p in zip(self.class_names, probs, strict=True) if p >= 0.5]
            return {
                "task": "multilabel",
                "labels": chosen,
                "probabilities": dict(zip(self.class_names, probs, strict=True)),
            }
        probs = torch.softmax(logits, dim=-1).tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        return {
            "task": "classification",
            "label": self.class_names[best],
            "probabilities": dict(zip(self.class_names, probs, strict=True)),
        }


def _input_of(spec: ModalitySpec) -> str:
    if spec.kind is ModalityKind.TEXT:
        return "text"
    if spec.kind in (ModalityKind.FEATURES, ModalityKind.TABULAR):
        return "numbers"
    return "file"


def _user_error(field: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its ``ValueError`` a 400 naming ``field``."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise RequestError(400, f"{field}: {exc}", field) from None
