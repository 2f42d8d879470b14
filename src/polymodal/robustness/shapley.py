"""Each modality's contribution to a prediction, by exact Shapley values.

A modality's Shapley value is its average marginal contribution over every order in which
the modalities could be revealed to the model.  With M modalities (M <= 6) it is computed
exactly from the model's value on all 2^M presence subsets:

    phi_m = sum over S not containing m of |S|! (M - |S| - 1)! / M! * [v(S + {m}) - v(S)]

The model itself defines "absent": a modality outside S is passed with ``present=False``
and its values zero-filled (:meth:`~polymodal.data.sample.ModalityBatch.with_present`),
exactly as a modality missing in the data.  So the baseline v(none) is the model's own
prediction without any of the explained modalities, and the values add up exactly
(efficiency): ``sum_m phi_m = v(all) - v(none)`` for every example.

The value v is, per example, by ``target``:

* ``"predicted"``: the softmax probability of the class the full model predicts;
* ``"true"``: the softmax probability of the true class;
* ``"logit"``: the raw logit of the class the full model predicts;
* for regression, the predicted value (``"predicted"`` or ``"logit"``).

All 2^M subsets of a batch go through the model together (one forward pass of B * 2^M
rows, split in passes of at most ``max_rows`` rows), never one example at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.sample import Batch
from polymodal.device import autocast
from polymodal.errors import unknown_name_error
from polymodal.inference import calibrate_groups, data_loader, model_logits

TARGETS = ("predicted", "true", "logit")
MAX_MODALITIES = 6


# --------------------------------------------------------------------------- subsets


def subset_masks(m: int) -> Tensor:
    """Every presence subset of ``m`` modalities, as bit masks.

    Row ``s`` holds modality ``i`` when bit ``i`` of ``s`` is set: row 0 is the empty set,
    row ``2^m - 1`` the full set.

    Shape:
        - output: (2^M, M) bool
    """
    s = torch.arange(2**m)[:, None]  # (S, 1)
    return (s >> torch.arange(m)) & 1 == 1  # (S, M)


def shapley_weights(m: int) -> Tensor:
    """The matrix W with ``phi = v @ W`` for values ``v`` over :func:`subset_masks` rows.

    ``W[s, i] = w(|s| - 1)`` when ``i`` is in ``s`` and ``-w(|s|)`` otherwise, with
    ``w(k) = k! (m - k - 1)! / m!``; every column sums to 0 and row ``2^m - 1`` minus row 0
    gives the efficiency ``sum_i phi_i = v(all) - v(none)``.

    Shape:
        - output: (2^M, M) float64
    """
    masks = subset_masks(m)  # (S, M)
    size = masks.sum(dim=1)  # (S,)
    w = torch.tensor(
        [math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)]
        + [0.0],  # w(m) never weights a term: no subset of size m lacks a modality
        dtype=torch.float64,
    )
    inside = w[(size - 1).clamp(min=0)][:, None].expand(-1, m)  # (S, M)
    outside = -w[size][:, None].expand(-1, m)  # (S, M)
    return torch.where(masks, inside, outside)


# --------------------------------------------------------------------------- one batch


@dataclass
class ShapleyResult:
    """Exact Shapley values of one batch.

    Attributes:
        values: (B, M) float64, phi per example and modality (columns in ``modalities``
            order); each row sums to ``full - empty``.
        modalities: the M modalities explained.
        full: (B,) float64, v(all modalities).
        empty: (B,) float64, v(none of them): the model's prediction without them.
        predictions: (B,) the full model's prediction: class index (long) for
            classification, the value (float) for regression.
        subsets: (B, 2^M) float64, v on every subset (rows of :func:`subset_masks`).
    """

    values: Tensor
    modalities: list[str]
    full: Tensor
    empty: Tensor
    predictions: Tensor
    subsets: Tensor


@torch.no_grad()
def shapley_values(
    model: nn.Module,
    batch: Batch,
    modalities: Sequence[str] | None = None,
    target: str = "predicted",
    *,
    task: str | None = None,
    max_rows: int = 8192,
    precision: str = "fp32",
) -> ShapleyResult:
    """Exact Shapley values of ``modalities`` for the examples of ``batch``.

    The model runs in eval mode (its mode is restored afterwards) on all 2^M presence
    subsets at once.  Modalities not explained stay as they are in the data.  A modality
    an example lacks in the data stays absent in every subset, so its value is 0 there.

    Args:
        model: maps a :class:`Batch` to logits or an output with ``.logits``
            (a :class:`~polymodal.models.MultimodalModel`), on ``batch``'s device.
        batch: the examples to explain.
        modalities: the modalities to explain (1 to 6); default ``model.names`` (every
            modality the model encodes), else every modality of the batch.
        target: ``"predicted"``, ``"true"`` or ``"logit"``; see the module docstring.
        task: ``"classification"`` or ``"regression"``; default ``model.task``.
        max_rows: most rows per forward pass (B * subsets); more subsets take more passes.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).

    Shape:
        - batch[m].present: (B,)
        - model output: (B, K) logits; (B,) or (B, 1) for regression
        - output.values: (B, M)
        - output.full, output.empty, output.predictions: (B,)
        - output.subsets: (B, 2^M)
    """
    if target not in TARGETS:
        raise unknown_name_error("target", target, TARGETS)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive int, got {max_rows!r}.")
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a polymodal Batch (from collate), got {type(batch)}.")
    names = _explained(model, batch, modalities)
    task = _task(model, task)
    masks = subset_masks(len(names))  # (S, M)
    b = batch.batch_size
    per_pass = max(1, max_rows // max(b, 1))
    device = batch[names[0]].present.device
    was_training = model.training
    model.eval()
    try:
        chunks = [
            _forward_subsets(model, batch, names, masks[i : i + per_pass], device, precision)
            for i in range(0, masks.shape[0], per_pass)
        ]
    finally:
        model.train(was_training)
    out = torch.cat(chunks).double()  # (S, B, K) or (S, B)
    if not torch.isfinite(out).all():
        bad = (~torch.isfinite(out.reshape(out.shape[0], -1))).any(dim=1).nonzero()[0, 0]
        absent = [n for n, p in zip(names, masks[int(bad)].tolist(), strict=True) if not p]
        raise ValueError(
            f"The model's output is not finite when modalities {absent} are absent; Shapley "
            "values need a prediction for every presence subset. Fix the fusion's handling "
            "of absent modalities, or explain fewer modalities (modalities=[...])."
        )
    v, predictions = _value(out, task, target, batch.target)  # (S, B), (B,)
    v = v.T.contiguous()  # (B, S)
    phi = v @ shapley_weights(len(names))  # (B, M)
    return ShapleyResult(phi, names, v[:, -1].clone(), v[:, 0].clone(), predictions, v)


def _explained(model: nn.Module, batch: Batch, modalities: Sequence[str] | None) -> list[str]:
    """The modality names to explain, checked against the batch and the 6-modality cap."""
    if modalities is None:
        model_names = getattr(model, "names", None)
        names = list(model_names) if model_names else list(batch.modalities)
    else:
        if isinstance(modalities, str):
            raise TypeError(
                f"modalities must be a list of modality names, got the string {modalities!r}; "
                f"pass [{modalities!r}]."
            )
        names = list(modalities)
        for n in names:
            if n not in batch.modalities:
                raise unknown_name_error("modality", n, list(batch.modalities))
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"modalities lists {dupes} more than once; list each once.")
    if not names:
        raise ValueError("There is no modality to explain: pass modalities=[...] (1 to 6).")
    if len(names) > MAX_MODALITIES:
        raise ValueError(
            f"Exact Shapley values over M={len(names)} modalities ({names}) need 2^{len(names)}"
            f" = {2 ** len(names)} model evaluations per example; at most {MAX_MODALITIES} "
            f"modalities are supported. Pass modalities=[...] with at most {MAX_MODALITIES} "
            "names (the others stay as they are in the data)."
        )
    return names


def _task(model: nn.Module, task: str | None) -> str:
    task = task if task is not None else getattr(model, "task", None)
    if task is None:
        raise ValueError(
            f"The model ({type(model).__name__}) has no .task attribute; pass "
            "task='classification' or task='regression'."
        )
    if task == "multilabel":
        raise ValueError(
            "Shapley values explain one number per example; a multilabel model predicts one "
            "per label, which is not supported yet. Explain a classification or regression "
            "model."
        )
    if task not in ("classification", "regression"):
        raise unknown_name_error("task", task, ["classification", "regression"])
    return str(task)


def _forward_subsets(
    model: nn.Module,
    batch: Batch,
    names: Sequence[str],
    masks: Tensor,
    device: torch.device,
    precision: str,
) -> Tensor:
    """Logits of ``batch`` under each subset of ``masks`` (n subsets), in one pass.

    Shape:
        - masks: (n, M) bool
        - output: (n, B, K), or (n, B) when the model returns (rows,) logits
    """
    n, b = masks.shape[0], batch.batch_size
    rows = torch.arange(b).repeat(n)  # (n * B,) subset-major
    tiled = batch.index(rows)
    mods = dict(tiled.modalities)
    for i, name in enumerate(names):
        keep = masks[:, i].repeat_interleave(b).to(device)  # (n * B,)
        mods[name] = mods[name].with_present(keep)
    with autocast(device, precision):
        logits = model_logits(model(Batch(mods, tiled.target, tiled.ids)))
    if logits.shape[0] != n * b:
        raise ValueError(
            f"The model returned {logits.shape[0]} rows of logits for a batch of {n * b}; "
            "it must return one row per example."
        )
    return logits.reshape(n, b, *logits.shape[1:])


def _value(out: Tensor, task: str, target: str, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """The value of every subset and the full model's predictions.

    Shape:
        - out: (S, B, K) logits (the last subset is the full set); (S, B) or (S, B, 1) for
          regression
        - output: (S, B) float64 values, (B,) predictions
    """
    s, b = out.shape[0], out.shape[1]
    if task == "regression":
        if out.dim() == 3 and out.shape[2] != 1:
            raise ValueError(
                f"A regression model must return one value per example; got {out.shape[2]}."
            )
        if target == "true":
            raise ValueError(
                "target='true' explains the probability of the true class, which a regression "
                "model does not predict; use target='predicted' (the predicted value)."
            )
        v = out.reshape(s, b)
        return v, v[-1].float()
    if out.dim() != 3:
        raise ValueError(
            f"A classification model must return (B, K) logits; got shape {tuple(out.shape[1:])}."
        )
    predictions = out[-1].argmax(dim=-1)  # (B,)
    index = predictions
    if target == "true":
        if labels is None:
            raise ValueError(
                "target='true' needs the true labels, but the batch has none; use "
                "target='predicted' for unlabelled data."
            )
        index = labels.reshape(-1).to(out.device).long()
        k = out.shape[2]
        if index.shape[0] != b or bool(((index < 0) | (index >= k)).any()):
            raise ValueError(
                f"target='true' needs one class index in [0, {k}) per example; got labels "
                f"{labels.tolist()[:8]}."
            )
    idx = index[None, :, None].expand(s, b, 1)  # (S, B, 1)
    scores = out if target == "logit" else torch.softmax(out, dim=-1)  # (S, B, K)
    return scores.gather(-1, idx).squeeze(-1), predictions  # (S, B)


# --------------------------------------------------------------------------- a data set


@dataclass
class ShapleyReport:
    """Shapley values over a data set, with their per-modality summary.

    Attributes:
        modalities: the M modalities explained.
        ids: the N example ids.
        values: (N, M) float64 phi per example and modality.
        full: (N,) v(all modalities); empty: (N,) v(none of them).
        predictions: (N,) the full model's predictions (class index or value).
        targets: (N,) true labels, or ``None`` for unlabelled data.
        task: ``"classification"`` or ``"regression"``.
        target: what v is (``"predicted"``, ``"true"``, ``"logit"``).
    """

    modalities: list[str]
    ids: list[str]
    values: Tensor
    full: Tensor
    empty: Tensor
    predictions: Tensor
    targets: Tensor | None
    task: str
    target: str

    @property
    def mean_phi(self) -> Tensor:
        """(M,) mean signed phi per modality."""
        return self.values.mean(dim=0)

    @property
    def mean_abs_phi(self) -> Tensor:
        """(M,) mean |phi| per modality."""
        return self.values.abs().mean(dim=0)

    @property
    def sem_abs_phi(self) -> Tensor:
        """(M,) standard error of the mean |phi| (0 for one example)."""
        n = self.values.shape[0]
        if n < 2:
            return torch.zeros(len(self.modalities), dtype=torch.float64)
        return self.values.abs().std(dim=0) / math.sqrt(n)

    @property
    def share(self) -> Tensor:
        """(M,) each modality's share of the total mean |phi| (sums to 1; 0 if all are 0)."""
        total = float(self.mean_abs_phi.sum())
        return self.mean_abs_phi / total if total > 0 else torch.zeros_like(self.mean_abs_phi)

    @property
    def efficiency_error(self) -> float:
        """max over examples of |sum_m phi_m - (v(all) - v(none))|: 0 up to rounding."""
        return float((self.values.sum(dim=1) - (self.full - self.empty)).abs().max())

    def rows(self) -> list[tuple[str, float, float, float, float]]:
        """Per modality: (name, mean phi, mean |phi|, its standard error, share)."""
        return list(
            zip(
                self.modalities,
                self.mean_phi.tolist(),
                self.mean_abs_phi.tolist(),
                self.sem_abs_phi.tolist(),
                self.share.tolist(),
                strict=True,
            )
        )

    def summary(self) -> dict[str, Any]:
        """The per-data-set summary as plain data (JSON-ready)."""
        per = self.rows()
        return {
            "task": self.task,
            "target": self.target,
            "examples": len(self.ids),
            "full_mean": float(self.full.mean()),
            "empty_mean": float(self.empty.mean()),
            "efficiency_error": self.efficiency_error,
            "modalities": {
                m: {"mean_phi": a, "mean_abs_phi": b, "sem_abs_phi": c, "share": d}
                for m, a, b, c, d in per
            },
        }

    def records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready record per example: id, prediction, label, full, empty, phi.

        Classes are named by ``class_names`` where given (else their index).
        """

        def label(y: Any) -> Any:
            if self.task != "classification":
                return float(y)
            return class_names[int(y)] if class_names else int(y)

        targets = [None] * len(self.ids) if self.targets is None else self.targets.tolist()
        return [
            {
                "id": i,
                "prediction": label(p),
                "label": None if y is None else label(y),
                "full": f,
                "empty": e,
                "phi": dict(zip(self.modalities, row, strict=True)),
            }
            for i, p, y, f, e, row in zip(
                self.ids,
                self.predictions.tolist(),
                targets,
                self.full.tolist(),
                self.empty.tolist(),
                self.values.tolist(),
                strict=True,
            )
        ]


def explain_dataset(
    model: nn.Module,
    dataset: MultimodalDataset,
    batch_size: int = 64,
    target: str = "predicted",
    *,
    modalities: Sequence[str] | None = None,
    task: str | None = None,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_rows: int = 8192,
) -> ShapleyReport:
    """Exact Shapley values of ``modalities`` for every example of ``dataset``, in order.

    The model is moved to ``device`` (in place); see :func:`shapley_values` for the rest.

    Shape:
        - output.values: (N, M), N = ``len(dataset)``
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    device = torch.device(device)
    model.to(device)
    calibrate_groups(model, dataset, batch_size, device)
    task = task if task is not None else getattr(model, "task", None) or dataset.schema.target.task
    results: list[ShapleyResult] = []
    ids: list[str] = []
    targets: list[Tensor] = []
    for batch in data_loader(dataset, batch_size):
        batch = batch.to(device)
        results.append(
            shapley_values(
                model,
                batch,
                modalities,
                target,
                task=task,
                max_rows=max_rows,
                precision=precision,
            )
        )
        ids += batch.ids
        if batch.target is not None:
            targets.append(batch.target.cpu())
    if not results:
        raise ValueError(f"Data set {dataset.name!r} (split {dataset.split!r}) is empty.")
    return ShapleyReport(
        modalities=results[0].modalities,
        ids=ids,
        values=torch.cat([r.values.cpu() for r in results]),
        full=torch.cat([r.full.cpu() for r in results]),
        empty=torch.cat([r.empty.cpu() for r in results]),
        predictions=torch.cat([r.predictions.cpu() for r in results]),
        targets=torch.cat(targets) if len(targets) == len(results) else None,
        task=str(task),
        target=target,
    )


# --------------------------------------------------------------------------- reporting


def format_table(report: ShapleyReport) -> str:
    """A Markdown table: modality, mean phi, mean |phi| +- its standard error, share."""
    lines = [
        "| modality | mean phi | mean abs phi | sem | share |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for m, a, b, c, d in report.rows():
        lines.append(f"| {m} | {a:+.4f} | {b:.4f} | {c:.4f} | {d:.1%} |")
    lines += [
        "",
        f"v = {_value_name(report)}; {len(report.ids)} examples; mean v(all) = "
        f"{float(report.full.mean()):.4f}, mean v(none) = {float(report.empty.mean()):.4f}; "
        f"max |sum phi - (v(all) - v(none))| = {report.efficiency_error:.1e}",
    ]
    return "\n".join(lines)


def _value_name(report: ShapleyReport) -> str:
    if report.task == "regression":
        return "the predicted value"
    return {
        "predicted": "probability of the predicted class",
        "true": "probability of the true class",
        "logit": "logit of the predicted class",
    }[report.target]


def plot_shapley(report: ShapleyReport, path: str | Path, title: str = "") -> Path:
    """A bar plot of mean |phi| per modality with standard-error bars (PNG, Agg)."""
    from polymodal.plotting import pyplot, save_figure

    plt = pyplot("plot_shapley")
    m = len(report.modalities)
    fig, ax = plt.subplots(figsize=(1.2 * m + 2.5, 3.6))
    ax.bar(
        range(m),
        report.mean_abs_phi.tolist(),
        yerr=report.sem_abs_phi.tolist(),
        capsize=4,
        color=[f"C{i % 10}" for i in range(m)],
    )
    ax.set_xticks(range(m), report.modalities)
    ax.set_ylabel("mean |Shapley value| (bars: s.e.m.)")
    prefix = f"{title}: " if title else ""
    ax.set_title(f"{prefix}v = {_value_name(report)}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = [
    "MAX_MODALITIES",
    "TARGETS",
    "ShapleyReport",
    "ShapleyResult",
    "explain_dataset",
    "format_table",
    "plot_shapley",
    "shapley_values",
    "shapley_weights",
    "subset_masks",
]
