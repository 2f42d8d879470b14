"""Modality imbalance: hooks of the supervised strategy that keep every modality learning.

A fused model tends to lean on the modality that is easiest to fit and to leave the others'
encoders under-trained.  ``optim.balance.method`` picks one of three published remedies;
each is a :class:`Balancer` that :class:`~polymodal.training.supervised.SupervisedStrategy`
calls at three points of the one loop (no loop of its own)::

    loss = balancer.loss(batch, fused_loss)    # in strategy.loss: the step's loss
    loss.backward()
    balancer.before_step()                     # strategy.before_step: rewrite gradients
    clip, optimiser step, schedule
    ...
    balancer.end_epoch(epoch, val_batches)     # strategy.end_epoch: after validation

=========== ===============================================================================
method      what it does
=========== ===============================================================================
``ogm_ge``  Peng et al., CVPR 2022.  Per step, each modality's score s_m (mean softmax
            probability of the true class predicted from that modality alone),
            rho_m = s_m / mean of the others' s; the dominant modality's *encoder*
            gradients are scaled by k_m = 1 - tanh(alpha * relu(rho_m - 1)), and every
            encoder's gradients get Gaussian noise of their own std (GE), in the window.
``gblend``  Wang et al., CVPR 2020.  Loss = w_fused * fused loss + sum_m w_m * unimodal
            loss (a linear head on each encoder's pooled output), w ∝ G / O^2 from the
            change of the validation loss (G) and of the overfitting gap val - train (O)
            over each ``interval`` of epochs (online G-Blend), normalised to sum to 1.
``mla``     Zhang et al., CVPR 2024.  Each batch is trained M times in a row, once per
            modality (as the authors' code does): step t trains modality names[t % M]
            alone, its encoder and the shared fusion + head; each shared linear layer's weight
            gradient is projected orthogonally to the inputs that layer saw before
            (orthogonal weight modification), so one modality does not overwrite another.
            Evaluation fuses the unimodal predictions, each weighted by exp(-entropy)
            (``mla_fusion: calibrated``: their logits averaged, each modality's divided
            by a temperature fitted on the validation split).
``unimodal`` The multitask baseline of MMPareto (Wei & Hu, ICML 2024) and the uni-modal
            losses of Du et al. 2023: loss = fused loss + w * sum_m loss of the model
            itself predicting from modality m alone (the others marked absent), masked to
            the rows that have m.  Each encoder must then be discriminative alone, and the
            fusion and head learn every single-modality input every step, not only on the
            rows that modality dropout happens to hit.  The encoders run once per step;
            only fusion and head run again per modality (``MultimodalModel.fuse``).
=========== ===============================================================================

"A modality alone" is the model itself with the other modalities marked absent
(:func:`only_modality`), as if they were missing from the data: this works for every
fusion, feature- or decision-level, where the OGM-GE paper splits a concatenation's linear
layer (for concatenation + linear head the two agree up to the bias).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from polymodal.data.sample import Batch
from polymodal.inference import model_logits
from polymodal.losses.supervised import task_loss
from polymodal.models.entropy import EntropyFusion, only_modality
from polymodal.training.balance_base import (
    Balancer,
    BatchSource,
    EncoderTap,
    FusedLoss,
    evaluating,
    masked_mean,
)
from polymodal.training.config import BalanceConfig

# --------------------------------------------------------------------------- OGM-GE


def ogm_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """OGM-GE's coefficient per modality from its score (Peng et al., eq. 9-10).

    ``rho_m = s_m / mean(s_j, j != m)`` and ``k_m = 1 - tanh(alpha * relu(rho_m - 1))``:
    the dominant modality (``rho_m > 1``) is slowed down, the others keep ``k = 1``.
    """
    out: dict[str, float] = {}
    for m, s in scores.items():
        others = [v for n, v in scores.items() if n != m]
        rho = s / max(sum(others) / len(others), 1e-12)
        out[m] = 1.0 - math.tanh(alpha * max(rho - 1.0, 0.0))
    return out


def modulate_gradients(
    params: Iterable[nn.Parameter], k: float, generator: torch.Generator | None
) -> None:
    """``grad <- k * grad (+ N(0, std(grad)^2))`` for each parameter with a gradient.

    The noise (OGM-GE's generalisation enhancement) has the standard deviation of the
    parameter's own (unscaled) gradient, drawn from ``generator``; ``None``: no noise.
    """
    for p in params:
        g = p.grad
        if g is None:
            continue
        new = g * k
        if generator is not None and g.numel() > 1:
            std = float(g.float().std()) + 1e-8
            noise = torch.randn(g.shape, generator=generator, dtype=torch.float32)
            new = new + (noise * std).to(device=g.device, dtype=g.dtype)
        p.grad = new


class OGMGE(Balancer):
    """On-the-fly gradient modulation with generalisation enhancement (``ogm_ge``)."""

    classification_only = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.coefficients: dict[str, float] | None = None
        self.k_sum = torch.zeros(len(self.names), dtype=torch.float64)  # (M,) for the log
        self.k_steps = torch.zeros((), dtype=torch.float64)

    def in_window(self) -> bool:
        cfg = self.cfg
        return cfg.start_epoch <= self.epoch and (
            cfg.end_epoch is None or self.epoch <= cfg.end_epoch
        )

    def scores(self, batch: Batch) -> dict[str, float]:
        """Each modality's mean softmax probability of the true class, predicted from it alone."""
        target = batch.target
        assert target is not None
        out: dict[str, float] = {}
        with evaluating(self.model):
            for m in self.names:
                alone, keep = only_modality(batch, m)
                probs = model_logits(self.model(alone)).float().softmax(-1)  # (B, K)
                true = probs.gather(1, target.long()[:, None]).squeeze(1)  # (B,)
                out[m] = float(masked_mean(true, keep))
        return out

    def loss(self, batch: Batch, fused_loss: FusedLoss) -> Tensor:
        loss = fused_loss(self.model(batch), batch)
        self.coefficients = None
        if self.in_window():
            self.coefficients = ogm_coefficients(self.scores(batch), self.cfg.alpha)
        return loss

    def before_step(self) -> None:
        if self.coefficients is None:
            return
        gen = self.generator if self.cfg.noise else None
        for m in self.names:
            modulate_gradients(self.encoders[m].parameters(), self.coefficients[m], gen)
        self.k_sum += torch.tensor([self.coefficients[m] for m in self.names], dtype=torch.float64)
        self.k_steps += 1

    def end_epoch(self, epoch: int, val_batches: BatchSource) -> dict[str, float]:
        if self.k_steps == 0:
            return {}
        means = (self.k_sum / self.k_steps).tolist()
        self.k_sum.zero_()
        self.k_steps.zero_()
        return {f"ogm_k_{m}": k for m, k in zip(self.names, means, strict=True)}

    def state(self) -> dict[str, Tensor]:
        return {"k_sum": self.k_sum.clone(), "k_steps": self.k_steps.clone()}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        if "k_sum" in state:
            self.k_sum = state["k_sum"].double().cpu().clone()
            self.k_steps = state["k_steps"].double().cpu().clone()

    def generators(self) -> dict[str, torch.Generator]:
        return {"balance:generator": self.generator}


# --------------------------------------------------------------------------- Gradient-Blending


def gblend_weights(
    before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]
) -> dict[str, float] | None:
    """Gradient-Blending's weights from (train loss, val loss) of each head at two points.

    ``O = val - train`` (the overfitting gap), ``G = val_before - val_after`` (the gain in
    generalisation), ``w ∝ G / (O_after - O_before)^2``, normalised to sum to 1 (Wang et
    al., eq. 5-6).  A head whose validation loss got worse (``G <= 0``) gets 0; ``None``
    when every head did (keep the previous weights).
    """
    raw: dict[str, float] = {}
    for name, (train0, val0) in before.items():
        train1, val1 = after[name]
        gain = val0 - val1
        d_over = (val1 - train1) - (val0 - train0)
        raw[name] = max(gain, 0.0) / max(d_over * d_over, 1e-12)
    total = sum(raw.values())
    if not math.isfinite(total) or total <= 0:
        return None
    return {k: v / total for k, v in raw.items()}


class GradientBlending(Balancer):
    """Fused loss plus unimodal-head losses, weighted by G / O^2 (``gblend``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        k = int(getattr(self.model, "num_outputs", 1))
        in_dims: dict[str, int] = dict(getattr(self.model.fusion, "in_dims", {}))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)  # heads seeded apart from the model's RNG
            self.heads = nn.ModuleDict({m: nn.Linear(in_dims[m], k) for m in self.names})
        self.heads_names = ["fused", *self.names]
        n = len(self.heads_names)
        self.weights = torch.full((n,), 1.0 / n, dtype=torch.float64)  # (M + 1,)
        self.train_sum = torch.zeros(n, dtype=torch.float64)
        self.train_count = torch.zeros((), dtype=torch.float64)
        self.previous = torch.full((n, 2), math.nan, dtype=torch.float64)  # (train, val)

    def module(self) -> nn.Module:
        return self.heads

    def to(self, device: torch.device) -> None:
        self.heads.to(device)

    def _unimodal(self, tap: EncoderTap, target: Tensor) -> list[Tensor]:
        losses = []
        for m in self.names:
            logits = self.heads[m](tap.pooled[m])  # (B, K)
            if self.task == "regression":
                logits = logits.squeeze(-1)  # (B,)
            per = task_loss(self.task, logits, target, self.regression_loss, "none")
            if per.dim() > 1:  # multilabel: (B, K) -> (B,)
                per = per.mean(-1)
            losses.append(masked_mean(per, tap.present[m]))
        return losses

    def loss(self, batch: Batch, fused_loss: FusedLoss) -> Tensor:
        assert batch.target is not None
        with EncoderTap(self.encoders) as tap:
            out = self.model(batch)
        losses = torch.stack([fused_loss(out, batch), *self._unimodal(tap, batch.target)])
        n = batch.batch_size
        self.train_sum += losses.detach().double().cpu() * n
        self.train_count += n
        return (self.weights.to(losses) * losses).sum()

    def val_losses(self, val_batches: BatchSource) -> Tensor:
        """(M + 1,) mean validation loss of the fused head and of each unimodal head."""
        total = torch.zeros(len(self.heads_names), dtype=torch.float64)
        count = 0
        with evaluating(self.model), evaluating(self.heads):
            for batch in val_batches():
                assert batch.target is not None
                with EncoderTap(self.encoders) as tap:
                    out = self.model(batch)
                fused = task_loss(self.task, model_logits(out), batch.target, self.regression_loss)
                losses = torch.stack([fused, *self._unimodal(tap, batch.target)])
                total += losses.double().cpu() * batch.batch_size
                count += batch.batch_size
        return total / max(count, 1)

    def end_epoch(self, epoch: int, val_batches: BatchSource) -> dict[str, float]:
        train = self.train_sum / self.train_count.clamp_min(1.0)
        self.train_sum.zero_()
        self.train_count.zero_()
        names = self.heads_names
        if epoch % self.cfg.interval == 0:
            now = torch.stack([train, self.val_losses(val_batches)], dim=1)  # (M + 1, 2)
            if not torch.isnan(self.previous).any():
                before = dict(zip(names, map(tuple, self.previous.tolist()), strict=True))
                w = gblend_weights(before, dict(zip(names, map(tuple, now.tolist()), strict=True)))
                if w is not None:
                    self.weights = torch.tensor([w[n] for n in names], dtype=torch.float64)
            self.previous = now
        return {f"gblend_w_{n}": w for n, w in zip(names, self.weights.tolist(), strict=True)}

    def state(self) -> dict[str, Tensor]:
        heads = {f"heads.{k}": v.detach().clone() for k, v in self.heads.state_dict().items()}
        return {
            **heads,
            "weights": self.weights.clone(),
            "train_sum": self.train_sum.clone(),
            "train_count": self.train_count.clone(),
            "previous": self.previous.clone(),
        }

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        heads = {k[len("heads.") :]: v for k, v in state.items() if k.startswith("heads.")}
        if heads:
            self.heads.load_state_dict(heads)
        for key in ("weights", "train_sum", "train_count", "previous"):
            if key in state:
                setattr(self, key, state[key].double().cpu().clone())


# --------------------------------------------------------------------------- MLA


def owm_update(projection: Tensor, r: Tensor, alpha: float) -> Tensor:
    """Orthogonal weight modification: remove input direction ``r`` from ``projection``.

    ``P <- P - (P r)(P r)^T / (alpha + r^T P r)``, the recursive least-squares form of
    ``P = I - A (A^T A + alpha I)^-1 A^T`` over every input ``r`` seen so far (columns of
    A).  A gradient ``G P`` then barely changes the layer's output on those inputs.

    Shape:
        - projection: (D, D), symmetric; r: (D,); return: (D, D)
    """
    k = projection @ r  # (D,)
    return projection - torch.outer(k, k) / (alpha + r @ k)


def owm_project(grad: Tensor, projection: Tensor) -> Tensor:
    """A linear layer's weight gradient projected away from the stored inputs: ``G P``.

    Shape:
        - grad: (D_out, D); projection: (D, D); return: (D_out, D)
    """
    return grad @ projection


class MLA(Balancer):
    """Alternating unimodal adaptation with gradient modification (``mla``)."""

    classification_only = True

    @property
    def steps_per_batch(self) -> int:
        return len(self.names)  # every modality takes its own step on every batch

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared: dict[str, nn.Module] = {"fusion": self.model.fusion}  # type: ignore[dict-item]
        head = getattr(self.model, "head", None)
        if isinstance(head, nn.Module):
            shared["head"] = head
        self.linears: dict[str, nn.Linear] = {
            f"{part}.{path}".rstrip("."): mod
            for part, module in shared.items()
            for path, mod in module.named_modules()
            if isinstance(mod, nn.Linear)
        }
        self.projections: dict[str, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self.step = torch.zeros((), dtype=torch.long)
        self.current: str | None = None
        # one wrapper for the whole run: it holds the fitted temperatures (``calibrated``)
        self.fusion = EntropyFusion(self.model, self.names, self.cfg.mla_fusion)

    def loss(self, batch: Batch, fused_loss: FusedLoss) -> Tensor:
        assert batch.target is not None
        m = self.names[int(self.step) % len(self.names)]

        def hook(name: str) -> Any:
            def keep(module: nn.Module, args: tuple[Tensor, ...]) -> None:
                x = args[0].detach()
                self.inputs[name] = x.reshape(-1, x.shape[-1]).float().mean(0)  # (D,)

            return keep

        handles = [lin.register_forward_pre_hook(hook(n)) for n, lin in self.linears.items()]
        try:
            alone, keep = only_modality(batch, m)
            logits = model_logits(self.model(alone))
        finally:
            for h in handles:
                h.remove()
        per = task_loss(self.task, logits, batch.target, self.regression_loss, "none")
        self.current = m
        self.step += 1
        return masked_mean(per, keep)

    def before_step(self) -> None:
        for other in self.names:  # only the current modality's encoder moves
            if other != self.current:
                for p in self.encoders[other].parameters():
                    p.grad = None
        for name, lin in self.linears.items():
            r, grad = self.inputs.get(name), lin.weight.grad
            if r is None or grad is None:
                continue
            proj = self.projections.get(name)
            if proj is None:
                proj = torch.eye(r.shape[0], device=r.device)
            lin.weight.grad = owm_project(grad.float(), proj).to(grad.dtype)
            self.projections[name] = owm_update(proj, r, self.cfg.owm_alpha)
        self.inputs.clear()

    def eval_model(self) -> nn.Module:
        return self.fusion

    def state(self) -> dict[str, Tensor]:
        proj = {f"projection.{k}": v.clone() for k, v in self.projections.items()}
        temperatures = self.fusion.log_inv_temperature.detach().cpu().clone()
        return {"step": self.step.clone(), "log_inv_temperature": temperatures, **proj}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        if "step" in state:
            self.step = state["step"].long().cpu().clone()
        if "log_inv_temperature" in state:
            self.fusion.log_inv_temperature.copy_(state["log_inv_temperature"])
        self.projections = {
            k[len("projection.") :]: v.float().clone()
            for k, v in state.items()
            if k.startswith("projection.")
        }

    def to(self, device: torch.device) -> None:
        self.projections = {k: v.to(device) for k, v in self.projections.items()}
        self.fusion.to(device)  # its temperatures (the model is already there)


# --------------------------------------------------------------------------- unimodal losses


def alone_masks(present: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    """Presence masks that show modality ``name`` alone, as :func:`only_modality` does.

    Where ``name`` is present every other modality is marked absent; rows without ``name``
    keep their masks (so no row is left with none; their loss is masked out).

    Shape:
        - present[m]: (B,) bool; return[m]: (B,) bool
    """
    keep = present[name]
    return {m: (p if m == name else p & ~keep) for m, p in present.items()}


class UnimodalLoss(Balancer):
    """Fused loss plus the model's own loss on each modality alone (``unimodal``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not callable(getattr(self.model, "fuse", None)):
            raise TypeError(
                f"optim.balance.method='unimodal' needs a model with a fuse(encoded, present) "
                f"method (a MultimodalModel); got {type(self.model).__name__}. Use "
                "optim.balance.method=gblend, whose unimodal heads read only the encoders."
            )
        self.last: dict[str, float] = {}
        self.train_sum = torch.zeros(len(self.names), dtype=torch.float64)  # (M,) for the log
        self.train_count = torch.zeros((), dtype=torch.float64)

    def unimodal_losses(self, tap: EncoderTap, target: Tensor) -> list[Tensor]:
        """(M,) losses of the model predicting from each modality alone, in ``names`` order,
        each the mean over the rows that have that modality."""
        fuse = cast(Callable[..., Any], self.model.fuse)
        losses = []
        for m in self.names:
            logits = model_logits(fuse(tap.outputs, alone_masks(tap.present, m)))
            per = task_loss(self.task, logits, target, self.regression_loss, "none")
            if per.dim() > 1:  # multilabel: (B, K) -> (B,)
                per = per.mean(-1)
            losses.append(masked_mean(per, tap.present[m]))
        return losses

    def loss(self, batch: Batch, fused_loss: FusedLoss) -> Tensor:
        assert batch.target is not None
        with EncoderTap(self.encoders) as tap:
            out = self.model(batch)
        unimodal = torch.stack(self.unimodal_losses(tap, batch.target))  # (M,)
        self.train_sum += unimodal.detach().double().cpu() * batch.batch_size
        self.train_count += batch.batch_size
        return fused_loss(out, batch) + self.cfg.unimodal_weight * unimodal.sum()

    def end_epoch(self, epoch: int, val_batches: BatchSource) -> dict[str, float]:
        means = (self.train_sum / self.train_count.clamp_min(1.0)).tolist()
        self.train_sum.zero_()
        self.train_count.zero_()
        return {f"unimodal_loss_{m}": v for m, v in zip(self.names, means, strict=True)}

    def state(self) -> dict[str, Tensor]:
        return {"train_sum": self.train_sum.clone(), "train_count": self.train_count.clone()}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        if "train_sum" in state:
            self.train_sum = state["train_sum"].double().cpu().clone()
            self.train_count = state["train_count"].double().cpu().clone()


# --------------------------------------------------------------------------- builder

#: Method name -> its balancer (``none`` has none).
BALANCERS: dict[str, type[Balancer]] = {
    "ogm_ge": OGMGE,
    "gblend": GradientBlending,
    "mla": MLA,
    "unimodal": UnimodalLoss,
}


def build_balancer(
    cfg: BalanceConfig, model: nn.Module, task: str, regression_loss: str = "mse", seed: int = 0
) -> Balancer | None:
    """The balancer of ``cfg.method`` for ``model``; ``None`` for ``none``.

    Raises:
        ValueError: the model has fewer than two encoded modalities, or the method needs a
            classification task and ``task`` is not one.
    """
    if cfg.method == "none":
        return None
    return BALANCERS[cfg.method](cfg, model, task, regression_loss, seed)


__all__ = [
    "BALANCERS",
    "MLA",
    "OGMGE",
    "Balancer",
    "BatchSource",
    "EntropyFusion",
    "FusedLoss",
    "GradientBlending",
    "UnimodalLoss",
    "alone_masks",
    "build_balancer",
    "gblend_weights",
    "modulate_gradients",
    "ogm_coefficients",
    "only_modality",
    "owm_project",
    "owm_update",
]
