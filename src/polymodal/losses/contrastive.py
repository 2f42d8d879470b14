"""Contrastive objectives for joint embeddings: CLIP's InfoNCE, SigLIP's sigmoid, VSE++'s hinge.

Each objective comes as a function (:func:`clip_loss`, :func:`siglip_loss`,
:func:`max_violation_loss`) taking its settings explicitly, and as an ``nn.Module``
(:class:`ClipLoss`, :class:`SigLipLoss`, :class:`MaxViolationLoss`) that owns the learnable
temperature (and bias), if any, and its :class:`DistributedContext`.

Row ``i`` of ``a`` and row ``i`` of ``b`` are the positive pair (two modalities of the same
example); every other row of the other modality, on every rank, is a negative.

Distributed training.  With ``world_size > 1`` each rank passes its local rows; the
embeddings are gathered with :func:`gather_features`.  With a differentiable gather
(``gather_with_grad=True``, always for SigLIP) the loss on each rank, averaged over ranks,
equals the single-process loss over the whole batch, and the gradient each rank gets for
its local embeddings is ``world_size`` times the single-process gradient of those rows:
data-parallel training (DDP), which averages gradients over ranks, therefore takes exactly
the single-process step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.losses.distributed import DistributedContext, gather_features

#: CLIP's initial temperature 0.07, as the log of the logit scale.
CLIP_INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: CLIP's cap on the logit scale (100), as a log.
MAX_LOGIT_SCALE = math.log(100)
#: SigLIP's initial log logit scale t' (scale 10) and bias (Zhai et al. 2023).
SIGLIP_INIT_LOGIT_SCALE = math.log(10)
SIGLIP_INIT_LOGIT_BIAS = -10.0


# --------------------------------------------------------------------------- checks


def _check_embedding(owner: str, name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name!r} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise ValueError(
            f"{owner}: {name!r} must be a non-empty (B, D) floating-point tensor, got "
            f"shape {tuple(x.shape)} and dtype {x.dtype}."
        )
    return x


def _check_pair(owner: str, a: object, b: object) -> tuple[Tensor, Tensor]:
    a, b = _check_embedding(owner, "a", a), _check_embedding(owner, "b", b)
    if a.shape != b.shape:
        raise ValueError(
            f"{owner}: 'a' and 'b' must have the same shape (row i of each is a positive "
            f"pair), got {tuple(a.shape)} and {tuple(b.shape)}. Project both modalities to "
            "the same embedding size and pass one row per example."
        )
    return a, b


def _as_scalar(owner: str, name: str, value: Tensor | float, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{owner}: {name!r} must be a scalar (one element), got shape {tuple(value.shape)}."
            )
        return value.reshape(()).to(like.dtype)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{owner}: {name!r} must be a float or a scalar tensor, got {type(value).__name__}."
        )
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def _scale(
    owner: str, logit_scale: Tensor | float, max_logit_scale: float | None, like: Tensor
) -> Tensor:
    log_scale = _as_scalar(owner, "logit_scale", logit_scale, like)
    if max_logit_scale is not None:
        log_scale = log_scale.clamp(max=max_logit_scale)
    return log_scale.exp()


# --------------------------------------------------------------------------- functions


def clip_loss(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    *,
    ctx: DistributedContext | None = None,
    gather_with_grad: bool = True,
    local_loss: bool = False,
    max_logit_scale: float | None = MAX_LOGIT_SCALE,
    normalize: bool = True,
) -> Tensor:
    """Symmetric InfoNCE (CLIP): cross-entropy over ``a -> b`` and ``b -> a``, averaged.

    ``logits = exp(logit_scale) * a @ b.T``; the target of row ``i`` is column ``i``.

    Args:
        a, b: embeddings of two modalities; row ``i`` of each is a positive pair.
        logit_scale: the log of the inverse temperature (CLIP initialises it to
            ``log(1 / 0.07)``); clamped at ``max_logit_scale`` (``None``: no clamp).
        ctx: the distributed context; ``None`` means a single process.
        gather_with_grad: let gradients flow through the gathered rows of other ranks.
            Without it, each rank's gradient for its own rows is the exact single-process
            gradient when ``local_loss=False``, but DDP's averaging then divides it by
            the world size; with ``local_loss=True`` it misses the terms where the rows
            are other ranks' negatives.
        local_loss: compute only the logits of this rank's rows against all columns
            (``B x world_size*B`` instead of the full square); the mean of the per-rank
            losses equals the full loss.
        normalize: L2-normalise ``a`` and ``b`` first (cosine similarity).

    Shape:
        a, b: (B, D) this rank's rows.
        output: () scalar loss.
    """
    a, b = _check_pair("clip_loss", a, b)
    ctx = ctx if ctx is not None else DistributedContext()
    scale = _scale("clip_loss", logit_scale, max_logit_scale, a)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    if ctx.is_distributed:
        all_a = gather_features(a, ctx, with_grad=gather_with_grad)  # (W*B, D)
        all_b = gather_features(b, ctx, with_grad=gather_with_grad)  # (W*B, D)
        if local_loss:
            logits_ab = scale * a @ all_b.T  # (B, W*B)
            logits_ba = scale * b @ all_a.T  # (B, W*B)
            labels = torch.arange(n, device=a.device) + ctx.rank * n
        else:
            logits_ab = scale * all_a @ all_b.T  # (W*B, W*B)
            logits_ba = logits_ab.T
            labels = torch.arange(all_a.shape[0], device=a.device)
    else:
        logits_ab = scale * a @ b.T  # (B, B)
        logits_ba = logits_ab.T
        labels = torch.arange(n, device=a.device)
    return (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels)) / 2


def siglip_loss(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    *,
    ctx: DistributedContext | None = None,
    max_logit_scale: float | None = MAX_LOGIT_SCALE,
    normalize: bool = True,
) -> Tensor:
    """Pairwise sigmoid loss (SigLIP, Zhai et al. 2023).

    ``logits = exp(logit_scale) * a @ b.T + logit_bias``; with ``z_ij = 1`` for the
    positive pairs (``i == j``) and ``-1`` otherwise, the loss is
    ``-sum_ij log sigmoid(z_ij * logits_ij) / B``.  It is symmetric in ``a`` and ``b``.

    Args:
        a, b: embeddings of two modalities; row ``i`` of each is a positive pair.
        logit_scale: the log ``t'`` of the logit scale (SigLIP initialises it to
            ``log(10)``); clamped at ``max_logit_scale`` (``None``: no clamp).
        logit_bias: the bias ``b`` (SigLIP initialises it to -10).
        ctx: the distributed context; ``None`` means a single process.  Each rank scores
            its rows of ``a`` against the gathered ``b`` of all ranks (a differentiable
            gather), so the mean of the per-rank losses equals the full loss.
        normalize: L2-normalise ``a`` and ``b`` first (cosine similarity).

    Shape:
        a, b: (B, D) this rank's rows.
        output: () scalar loss.
    """
    a, b = _check_pair("siglip_loss", a, b)
    ctx = ctx if ctx is not None else DistributedContext()
    scale = _scale("siglip_loss", logit_scale, max_logit_scale, a)
    bias = _as_scalar("siglip_loss", "logit_bias", logit_bias, a)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    all_b = gather_features(b, ctx, with_grad=True)  # (W*B, D)
    logits = scale * a @ all_b.T + bias  # (B, W*B)
    signs = -torch.ones_like(logits)  # z_ij
    rows = torch.arange(n, device=a.device)
    signs[rows, rows + ctx.rank * n] = 1.0
    return -F.logsigmoid(signs * logits).sum() / n


# --------------------------------------------------------------------------- modules


def multi_positive_clip_loss(
    a: Tensor,
    b: Tensor,
    owner: Tensor,
    logit_scale: Tensor | float,
    *,
    ctx: DistributedContext | None = None,
    gather_with_grad: bool = True,
    local_loss: bool = False,
) -> Tensor:
    """CLIP's symmetric InfoNCE when each ``a`` row has several positive ``b`` rows.

    ``b -> a``: cross-entropy of each ``b`` row over the ``a`` rows, target its owner.
    ``a -> b``: ``-log`` of the softmax probability mass each ``a`` row puts on all of its
    own ``b`` rows (a multi-positive InfoNCE: any of an image's five captions is a hit).
    The two directions are averaged.  ``a`` and ``b`` are L2-normalised here;
    ``logit_scale`` is the log of the inverse temperature, as in :func:`clip_loss`.

    Distributed (``ctx`` of several ranks): every rank passes its own rows and owners (its
    ``a`` row indices); all ranks' rows are gathered, as in :func:`clip_loss`, with
    ``gather_with_grad`` and ``local_loss`` meaning the same.  Every rank must pass the
    same ``B`` and ``M`` (equal shares of the global batch; the gather needs it).  The
    mean of the per-rank losses is then the single-process loss of the global batch.

    Shape:
        a: (B, D); b: (M, D); owner: (M,) long, the ``a`` row of each ``b`` row, every
        ``a`` row owning at least one; output: () scalar.
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=a.dtype, device=a.device).exp()
    ctx = ctx if ctx is not None else DistributedContext()
    n = a.shape[0]
    mine = torch.arange(n, device=a.device)  # (B,) this rank's a rows, in local numbering
    if ctx.is_distributed:
        offset = ctx.rank * n  # rank k's a rows are k*B ... (k+1)*B - 1 once gathered
        all_a = gather_features(a, ctx, with_grad=gather_with_grad)  # (W*B, D)
        all_b = gather_features(b, ctx, with_grad=gather_with_grad)  # (W*M, D)
        all_owner = gather_features(owner + offset, ctx, with_grad=False)  # (W*M,)
        if local_loss:  # this rank's rows against every rank's columns
            logits_ab = scale * a @ all_b.T  # (B, W*M)
            logits_ba = scale * b @ all_a.T  # (M, W*B)
            col_owner, targets, mine = all_owner, owner + offset, mine + offset
        else:  # the whole global square on every rank
            logits_ab = scale * all_a @ all_b.T  # (W*B, W*M)
            logits_ba = logits_ab.T
            col_owner, targets = all_owner, all_owner
            mine = torch.arange(all_a.shape[0], device=a.device)
    else:
        logits_ab = scale * a @ b.T  # (B, M)
        logits_ba = logits_ab.T
        col_owner, targets = owner, owner
    b_to_a = F.cross_entropy(logits_ba, targets)
    positive = col_owner[None, :] == mine[:, None]  # (rows of logits_ab, columns)
    pos_lse = logits_ab.masked_fill(~positive, float("-inf")).logsumexp(dim=1)
    a_to_b = (logits_ab.logsumexp(dim=1) - pos_lse).mean()
    return (a_to_b + b_to_a) / 2


def max_violation_loss(
    a: Tensor,
    b: Tensor,
    *,
    margin: float = 0.2,
    owner: Tensor | None = None,
    ctx: DistributedContext | None = None,
    normalize: bool = True,
) -> Tensor:
    """VSE++'s hinge loss on the hardest negative of each pair (Faghri et al., BMVC 2018).

    With ``s = a @ b.T`` (cosine similarities), each positive pair ``(i, j)`` (``b`` row
    ``j`` belongs to ``a`` row ``i``) costs, in each direction, the hinge of its *hardest*
    negative only (the "max of hinges", not the sum over all negatives)::

        a -> b:  max(0, margin - s_ij + max over b rows j' not of i  s_ij')
        b -> a:  max(0, margin - s_ij + max over a rows i' != i      s_i'j)

    The loss is the mean over positive pairs of each direction, the two directions
    averaged.  With ``owner``, several ``b`` rows may belong to one ``a`` row (an image's
    five captions): none of them is a negative of that row.  There is no temperature: the
    margin is on the cosine scale.

    Args:
        a, b: embeddings of two modalities.
        margin: the hinge's margin (VSE++: 0.2); must be > 0.
        owner: the ``a`` row of each ``b`` row; ``None`` means row ``j`` of ``b`` belongs
            to row ``j`` of ``a`` (then ``a`` and ``b`` have the same shape).
        ctx: the distributed context; ``None`` means a single process.  Every rank gathers
            all ranks' rows (a differentiable gather) and scores the whole global batch, so
            the mean of the per-rank losses is the single-process loss of the global batch;
            every rank must pass the same shapes.
        normalize: L2-normalise ``a`` and ``b`` first (cosine similarity).

    Shape:
        a: (B, D); b: (M, D) (M = B without ``owner``); owner: (M,) long, values in
        ``[0, B)``; output: () scalar.
    """
    owner_name = "max_violation_loss"
    if owner is None:
        a, b = _check_pair(owner_name, a, b)
        owner = torch.arange(a.shape[0], device=a.device)
    else:
        a, b = _check_embedding(owner_name, "a", a), _check_embedding(owner_name, "b", b)
        if owner.shape != (b.shape[0],) or owner.dtype != torch.long:
            raise ValueError(
                f"{owner_name}: 'owner' must be a ({b.shape[0]},) long tensor (the 'a' row of "
                f"each 'b' row), got shape {tuple(owner.shape)} and dtype {owner.dtype}."
            )
    if isinstance(margin, bool) or not isinstance(margin, int | float) or margin <= 0:
        raise ValueError(f"{owner_name}: 'margin' must be a number > 0, got {margin!r}.")
    ctx = ctx if ctx is not None else DistributedContext()
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    if ctx.is_distributed:
        offset = ctx.rank * a.shape[0]
        owner = gather_features(owner + offset, ctx, with_grad=False)  # (W*M,)
        a = gather_features(a, ctx, with_grad=True)  # (W*B, D)
        b = gather_features(b, ctx, with_grad=True)  # (W*M, D)
    scores = a @ b.T  # (B, M)
    cols = torch.arange(b.shape[0], device=a.device)
    positive = scores[owner, cols]  # (M,) s of each positive pair
    mine = owner[None, :] == torch.arange(a.shape[0], device=a.device)[:, None]  # (B, M)
    negatives = scores.masked_fill(mine, float("-inf"))
    hardest_b = negatives.amax(dim=1)[owner]  # (M,) the hardest b row of each pair's a row
    hardest_a = negatives.amax(dim=0)  # (M,) the hardest other a row of each b row
    a_to_b = (margin - positive + hardest_b).clamp(min=0).mean()
    b_to_a = (margin - positive + hardest_a).clamp(min=0).mean()
    return (a_to_b + b_to_a) / 2


class ClipLoss(nn.Module):
    """Symmetric InfoNCE (CLIP) with a learnable temperature; see :func:`clip_loss`.

    Args:
        rank, world_size: this process's place in the data-parallel job (see
            :class:`DistributedContext`); the defaults mean a single process.
        gather_with_grad, local_loss: as in :func:`clip_loss`.
        group: the ``torch.distributed`` process group (``None``: the default group).
        init_logit_scale: initial ``logit_scale``, the log inverse temperature
            (default ``log(1 / 0.07)``).
        max_logit_scale: clamp for ``logit_scale`` (default ``log(100)``; ``None``: none).
        learn_logit_scale: make ``logit_scale`` a trainable parameter.

    Attributes:
        logit_scale: () parameter; add it to the optimizer with the model's parameters.

    Shape:
        a, b: (B, D) this rank's rows.
        output: () scalar loss.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        gather_with_grad: bool = True,
        local_loss: bool = False,
        *,
        group: object = None,
        init_logit_scale: float = CLIP_INIT_LOGIT_SCALE,
        max_logit_scale: float | None = MAX_LOGIT_SCALE,
        learn_logit_scale: bool = True,
    ) -> None:
        super().__init__()
        self.ctx = DistributedContext(rank, world_size, group)
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss
        self.max_logit_scale = max_logit_scale
        self.logit_scale = nn.Parameter(
            torch.tensor(float(init_logit_scale)), requires_grad=learn_logit_scale
        )

    @property
    def temperature(self) -> float:
        """The current temperature ``1 / exp(logit_scale)`` (after clamping)."""
        log_scale = float(self.logit_scale.detach())
        if self.max_logit_scale is not None:
            log_scale = min(log_scale, self.max_logit_scale)
        return math.exp(-log_scale)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """The loss for this rank's rows ``a`` and ``b`` (positive pairs row by row)."""
        return clip_loss(
            a,
            b,
            self.logit_scale,
            ctx=self.ctx,
            gather_with_grad=self.gather_with_grad,
            local_loss=self.local_loss,
            max_logit_scale=self.max_logit_scale,
        )

    def extra_repr(self) -> str:
        return (
            f"rank={self.ctx.rank}, world_size={self.ctx.world_size}, "
            f"gather_with_grad={self.gather_with_grad}, local_loss={self.local_loss}"
        )


class SigLipLoss(nn.Module):
    """Pairwise sigmoid loss (SigLIP) with learnable scale and bias; see :func:`siglip_loss`.

    Args:
        rank, world_size: this process's place in the data-parallel job (see
            :class:`DistributedContext`); the defaults mean a single process.
        group: the ``torch.distributed`` process group (``None``: the default group).
        init_logit_scale: initial ``t'`` (default ``log(10)``).
        init_logit_bias: initial bias (default -10).
        max_logit_scale: clamp for ``logit_scale`` (default ``log(100)``; ``None``: none).

    Attributes:
        logit_scale, logit_bias: () parameters; add them to the optimizer.

    Shape:
        a, b: (B, D) this rank's rows.
        output: () scalar loss.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        *,
        group: object = None,
        init_logit_scale: float = SIGLIP_INIT_LOGIT_SCALE,
        init_logit_bias: float = SIGLIP_INIT_LOGIT_BIAS,
        max_logit_scale: float | None = MAX_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        self.ctx = DistributedContext(rank, world_size, group)
        self.max_logit_scale = max_logit_scale
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias)))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """The loss for this rank's rows ``a`` and ``b`` (positive pairs row by row)."""
        return siglip_loss(
            a,
            b,
            self.logit_scale,
            self.logit_bias,
            ctx=self.ctx,
            max_logit_scale=self.max_logit_scale,
        )

    def extra_repr(self) -> str:
        return f"rank={self.ctx.rank}, world_size={self.ctx.world_size}"


class MaxViolationLoss(nn.Module):
    """VSE++'s hardest-negative hinge loss; see :func:`max_violation_loss`.

    Args:
        rank, world_size: this process's place in the data-parallel job (see
            :class:`DistributedContext`); the defaults mean a single process.
        margin: the hinge's margin on the cosine scale (VSE++: 0.2).
        group: the ``torch.distributed`` process group (``None``: the default group).

    It has no parameters (no temperature).

    Shape:
        a: (B, D); b: (M, D); owner: (M,) long or ``None`` (then M = B).
        output: () scalar loss.
    """

    def __init__(
        self, rank: int = 0, world_size: int = 1, *, margin: float = 0.2, group: object = None
    ) -> None:
        super().__init__()
        if isinstance(margin, bool) or not isinstance(margin, int | float) or margin <= 0:
            raise ValueError(f"MaxViolationLoss: 'margin' must be a number > 0, got {margin!r}.")
        self.ctx = DistributedContext(rank, world_size, group)
        self.margin = float(margin)

    def forward(self, a: Tensor, b: Tensor, owner: Tensor | None = None) -> Tensor:
        """The loss for this rank's rows (``owner``: the ``a`` row of each ``b`` row)."""
        return max_violation_loss(a, b, margin=self.margin, owner=owner, ctx=self.ctx)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, rank={self.ctx.rank}, world_size={self.ctx.world_size}"
