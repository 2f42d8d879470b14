"""How much each modality's encoder learned: a linear probe on its frozen pooled output.

A fused model can score well while one encoder learned nearly nothing (modality
imbalance).  :func:`probe_modalities` fits, for each modality, a multinomial logistic
regression on the trained encoder's pooled vectors of the training split, picks its L2
weight on the validation split from a small grid, and reports its accuracy on the test
split, to set next to the fused model's accuracy (``polymodal evaluate RUN --probe``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.dataset import MultimodalDataset
from polymodal.inference import calibrate_groups, data_loader

#: The L2 weights tried on the validation split (on standardised features).
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


@torch.no_grad()
def pooled_features(
    model: nn.Module,
    dataset: MultimodalDataset,
    name: str,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """The frozen encoder ``model.encoders[name]``'s pooled outputs on ``dataset`` (eval
    mode), for the examples that have the modality, with their class targets.

    Shape:
        - return[0]: (N, D) float32 on the CPU; return[1]: (N,) long
    """
    encoders = model.encoders
    assert isinstance(encoders, nn.ModuleDict)
    encoder = encoders[name]
    calibrate_groups(model, dataset, batch_size, device)
    was = encoder.training
    encoder.eval()
    feats: list[Tensor] = []
    targets: list[Tensor] = []
    try:
        for batch in data_loader(dataset, batch_size):
            batch = batch.to(device)
            mb = batch[name]
            keep = mb.present.to(torch.bool)  # (B,)
            assert batch.target is not None
            groups = getattr(encoder, "uses_groups", False)
            out = encoder(mb, ids=batch.ids) if groups else encoder(mb)
            feats.append(out.pooled[keep].float().cpu())  # (b, D)
            targets.append(batch.target[keep].long().cpu())
    finally:
        encoder.train(was)
    return torch.cat(feats), torch.cat(targets)


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, l2: float, steps: int = 100) -> nn.Linear:
    """Multinomial logistic regression ``x -> y`` with L2 weight ``l2`` on the weights
    (full-batch L-BFGS from zero weights: deterministic).

    Shape:
        - x: (N, D); y: (N,) long in [0, num_classes)
    """
    linear = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    return linear


def _accuracy(linear: nn.Linear, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((linear(x).argmax(-1) == y).float().mean()) if len(y) else float("nan")


def probe_modalities(
    trained: nn.Module | object,
    train_ds: MultimodalDataset,
    val_ds: MultimodalDataset,
    test_ds: MultimodalDataset,
    l2_grid: Sequence[float] = L2_GRID,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Test accuracy of a linear probe on each modality's frozen encoder.

    Args:
        trained: a :class:`~polymodal.models.MultimodalModel` (``encoders``) or a
            :class:`~polymodal.inference.TrainedModel` holding one.
        train_ds, val_ds, test_ds: the run's splits (the probe is fitted on train, its L2
            weight chosen on val, and it is scored on test).
        l2_grid: the L2 weights tried.

    Returns:
        modality name -> accuracy on ``test_ds`` (examples that have the modality).

    Raises:
        ValueError: the task is not single-label classification, or the model has no
            encoders.
    """
    model = getattr(trained, "model", trained)
    encoders = getattr(model, "encoders", None)
    if not isinstance(model, nn.Module) or not isinstance(encoders, nn.ModuleDict):
        raise ValueError(
            f"probe_modalities needs a MultimodalModel with per-modality encoders, got "
            f"{type(model).__name__}."
        )
    target = train_ds.schema.target
    if target.task != "classification":
        raise ValueError(
            f"The probe measures accuracy, so it needs a classification task; data set "
            f"{train_ds.name!r} has task {target.task!r}."
        )
    if not l2_grid:
        raise ValueError("l2_grid must hold at least one L2 weight, got an empty grid.")
    model.to(device)
    out: dict[str, float] = {}
    for name in sorted(encoders):
        xs = [
            pooled_features(model, ds, name, batch_size, device)
            for ds in (train_ds, val_ds, test_ds)
        ]
        mean, std = xs[0][0].mean(0), xs[0][0].std(0).clamp_min(1e-6)  # train statistics
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = [((x - mean) / std, y) for x, y in xs]
        best, best_acc = None, -1.0
        for l2 in l2_grid:
            probe = fit_logistic(x_tr, y_tr, target.num_classes, l2)
            acc = _accuracy(probe, x_va, y_va)
            if best is None or acc > best_acc:  # ties keep the smaller L2 weight
                best, best_acc = probe, acc
        assert best is not None
        out[name] = _accuracy(best, x_te, y_te)
    return out


__all__ = ["L2_GRID", "fit_logistic", "pooled_features", "probe_modalities"]
