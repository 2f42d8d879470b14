"""CLIP and SigLIP objectives: hand-computed values, invariants, and a 2-process gloo run."""

from __future__ import annotations

import datetime
import math
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from polymodal.losses import (
    ClipLoss,
    DistributedContext,
    MaxViolationLoss,
    SigLipLoss,
    clip_loss,
    gather_features,
    max_violation_loss,
    multi_positive_clip_loss,
    siglip_loss,
)


def pair(n: int = 6, d: int = 4, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


# --------------------------------------------------------------------------- known values


def test_clip_identical_rows_give_log_n_at_any_scale() -> None:
    ones = torch.ones(5, 3)  # every logit equal -> uniform softmax
    for log_scale in (0.0, 1.0, math.log(1 / 0.07)):
        assert clip_loss(ones, ones, log_scale).item() == pytest.approx(math.log(5), abs=1e-6)


def test_clip_identity_embeddings_closed_form() -> None:
    n = 4
    eye = torch.eye(n)  # logits = scale * I
    # scale 1 (logit_scale 0): each row's CE is -1 + log(e + n - 1)
    expected = math.log(math.e + n - 1) - 1
    assert clip_loss(eye, eye, 0.0).item() == pytest.approx(expected, abs=1e-6)
    # scale e (logit_scale 1): -e + log(e^e + n - 1)
    expected = math.log(math.exp(math.e) + n - 1) - math.e
    assert clip_loss(eye, eye, 1.0).item() == pytest.approx(expected, abs=1e-6)


def test_clip_small_explicit_example() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # unit rows; a @ b.T = [[1, .6], [0, .8]]
    e = math.exp
    a_to_b = ((-1 + math.log(e(1) + e(0.6))) + (-0.8 + math.log(e(0) + e(0.8)))) / 2
    b_to_a = ((-1 + math.log(e(1) + e(0))) + (-0.8 + math.log(e(0.6) + e(0.8)))) / 2
    assert clip_loss(a, b, 0.0).item() == pytest.approx((a_to_b + b_to_a) / 2, abs=1e-6)


def test_siglip_matches_hand_formula() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    sims = [[1.0, 0.6], [0.0, 0.8]]
    t, bias = math.log(10), -10.0
    total = 0.0
    for i in range(2):
        for j in range(2):
            z = 1.0 if i == j else -1.0
            logit = math.exp(t) * sims[i][j] + bias
            total += math.log1p(math.exp(-z * logit))  # -log sigmoid(z * logit)
    expected = total / 2
    assert siglip_loss(a, b, t, bias).item() == pytest.approx(expected, rel=1e-6)
    loss = SigLipLoss()
    assert loss(a, b).item() == pytest.approx(expected, rel=1e-6)


def test_multi_positive_matches_hand_formula() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # rows 0, 1 are a[0]'s; row 2 a[1]'s
    owner = torch.tensor([0, 0, 1])
    sims = [[1.0, 0.6, 0.0], [0.0, 0.8, 1.0]]  # a @ b.T, scale 1 (logit_scale 0)
    e, log = math.exp, math.log
    # a -> b: -log of the probability mass on all of the row's positives.
    a_to_b = (
        -log((e(1.0) + e(0.6)) / (e(1.0) + e(0.6) + e(0.0)))
        - log(e(1.0) / (e(0.0) + e(0.8) + e(1.0)))
    ) / 2
    # b -> a: each b row's cross-entropy over the a rows, target its owner.
    b_to_a = sum(-log(e(sims[owner[j]][j]) / (e(sims[0][j]) + e(sims[1][j]))) for j in range(3)) / 3
    expected = (a_to_b + b_to_a) / 2
    assert multi_positive_clip_loss(a, b, owner, 0.0).item() == pytest.approx(expected, abs=1e-6)


def test_multi_positive_with_one_positive_each_is_clip_loss() -> None:
    a, b = pair(5, 4, seed=3)
    for log_scale in (0.0, 2.0):
        torch.testing.assert_close(
            multi_positive_clip_loss(a, b, torch.arange(5), log_scale), clip_loss(a, b, log_scale)
        )
    # Rows owned out of order: the same loss as the rows sorted by owner.
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(
        multi_positive_clip_loss(a, b[perm], perm, 2.0), clip_loss(a, b, 2.0)
    )
    b2 = torch.cat([b, a + 0.01 * torch.randn(5, 4, generator=torch.Generator().manual_seed(0))])
    owner = torch.cat([torch.arange(5), torch.arange(5)])
    assert torch.isfinite(multi_positive_clip_loss(a, b2, owner, 2.0))


# --------------------------------------------------------------------------- invariants


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    log_scale=st.floats(-2.0, 5.0),
    bias=st.floats(-10.0, 5.0),
)
def test_losses_are_symmetric(n: int, d: int, seed: int, log_scale: float, bias: float) -> None:
    a, b = pair(n, d, seed)
    torch.testing.assert_close(clip_loss(a, b, log_scale), clip_loss(b, a, log_scale))
    torch.testing.assert_close(
        siglip_loss(a, b, log_scale, bias), siglip_loss(b, a, log_scale, bias)
    )


def test_losses_ignore_row_norms_when_normalizing() -> None:
    a, b = pair()
    scaled = a * torch.arange(1, 7).float()[:, None]
    assert torch.allclose(clip_loss(a, b, 1.0), clip_loss(scaled, b, 1.0), atol=1e-6)
    assert torch.allclose(siglip_loss(a, b, 1.0, 0.0), siglip_loss(scaled, b, 1.0, 0.0), atol=1e-5)


def test_gradients_are_finite_and_reach_the_temperature() -> None:
    a, b = pair()
    a.requires_grad_(True)
    b.requires_grad_(True)
    for loss_fn in (ClipLoss(), SigLipLoss()):
        a.grad = b.grad = None
        loss = loss_fn(a, b)
        loss.backward()
        assert torch.isfinite(loss)
        for grad in (a.grad, b.grad, *(p.grad for p in loss_fn.parameters())):
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_logit_scale_is_clamped_at_log_100() -> None:
    a, b = pair()
    assert torch.allclose(clip_loss(a, b, 10.0), clip_loss(a, b, math.log(100)))
    loss = ClipLoss(init_logit_scale=10.0)
    loss(a, b).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.item() == 0.0
    assert loss.temperature == pytest.approx(0.01)


def test_module_defaults_and_functional_agree() -> None:
    clip, sig = ClipLoss(), SigLipLoss()
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert clip.temperature == pytest.approx(0.07)
    assert sig.logit_scale.item() == pytest.approx(math.log(10))
    assert sig.logit_bias.item() == -10.0
    a, b = pair()
    assert torch.allclose(clip(a, b), clip_loss(a, b, math.log(1 / 0.07)))
    assert torch.allclose(sig(a, b), siglip_loss(a, b, math.log(10), -10.0))
    assert not ClipLoss(learn_logit_scale=False).logit_scale.requires_grad


def test_single_process_gather_is_identity() -> None:
    x = torch.randn(3, 2)
    assert gather_features(x, DistributedContext(), with_grad=True) is x


# --------------------------------------------------------------------------- errors


def test_errors_name_the_problem() -> None:
    a, b = pair()
    with pytest.raises(
        ValueError, match=r"'a' and 'b' must have the same shape.*\(6, 4\) and \(5, 4\)"
    ):
        clip_loss(a, b[:5], 0.0)
    with pytest.raises(ValueError, match=r"'a' must be a non-empty \(B, D\)"):
        siglip_loss(a[0], b[0], 0.0, 0.0)
    with pytest.raises(TypeError, match=r"'b' must be a torch\.Tensor, got list"):
        clip_loss(a, b.tolist(), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'logit_scale' must be a scalar"):
        clip_loss(a, b, torch.zeros(2))
    with pytest.raises(ValueError, match=r"'rank' must be in \[0, world_size=2\), got rank=2"):
        ClipLoss(rank=2, world_size=2)
    with pytest.raises(ValueError, match="'world_size' must be an int >= 1, got 0"):
        DistributedContext(0, 0)
    with pytest.raises(RuntimeError, match=r"torch\.distributed is not initialised"):
        ClipLoss(rank=0, world_size=2)(a, b)


# --------------------------------------------------------------------------- max violation


def test_max_violation_matches_hand_worked_example() -> None:
    # Unit vectors, so the scores are the dot products.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    # s = [[0.8, 0.6], [0.6, 0.8]]: positives 0.8, every hardest negative 0.6.
    # Each hinge: max(0, 0.5 - 0.8 + 0.6) = 0.3, in both directions.
    loss = max_violation_loss(a, b, margin=0.5)
    torch.testing.assert_close(loss, torch.tensor(0.3))
    # A margin below the gap (0.2) leaves no violation at all.
    assert max_violation_loss(a, b, margin=0.1).item() == 0.0


def test_max_violation_counts_only_the_hardest_negative() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, generator=g)
    b = a + 0.3 * torch.randn(5, 4, generator=g)
    scores = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    pos = scores.diag()
    off = scores - 2 * torch.eye(5)  # the positives can never be the hardest negative
    expected = (
        (0.2 - pos + off.amax(dim=1)).clamp(min=0).mean()
        + (0.2 - pos + off.amax(dim=0)).clamp(min=0).mean()
    ) / 2
    torch.testing.assert_close(max_violation_loss(a, b), expected)
    # Gradient: a b row that is nobody's hardest negative and whose own pair does not
    # violate gets none.
    b = b.clone().requires_grad_(True)
    max_violation_loss(a, b, margin=0.2).backward()
    assert b.grad is not None
    hardest = set(off.argmax(dim=1).tolist())
    for j in range(5):
        violated = bool((0.2 - pos[j] + off[j].max()) > 0 or (0.2 - pos[j] + off[:, j].max()) > 0)
        if j not in hardest and not violated:
            assert b.grad[j].abs().max() == 0


def test_max_violation_with_owners_never_uses_a_rows_own_positives() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Image 0 owns captions 0 and 1, image 1 owns caption 2.
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    owner = torch.tensor([0, 0, 1])
    # s = [[1, 0.6, 0], [0, 0.8, 1]].  Image 0's hardest negative is caption 2 (0), not its
    # own caption 1 (0.6); image 1's is caption 1 (0.8).
    # a -> b hinges (margin 0.5): caption 0: 0.5-1+0 -> 0; caption 1: 0.5-0.6+0 -> 0;
    # caption 2: 0.5-1+0.8 = 0.3.  b -> a: caption 0: 0.5-1+0 -> 0; caption 1: 0.5-0.6+0.8
    # = 0.7; caption 2: 0.5-1+0 -> 0.  Means 0.1 and 0.7/3, averaged.
    loss = max_violation_loss(a, b, margin=0.5, owner=owner)
    torch.testing.assert_close(loss, torch.tensor((0.1 + 0.7 / 3) / 2))
    # owner = arange is the one-positive form.
    x, y = pair(6, 4, seed=3)
    torch.testing.assert_close(
        max_violation_loss(x, y, owner=torch.arange(6)), max_violation_loss(x, y)
    )
    torch.testing.assert_close(MaxViolationLoss(margin=0.2)(x, y), max_violation_loss(x, y))


def test_max_violation_errors_name_the_problem() -> None:
    a, b = pair(4, 3)
    with pytest.raises(ValueError, match=r"'margin' must be a number > 0, got 0"):
        max_violation_loss(a, b, margin=0)
    with pytest.raises(ValueError, match=r"'owner' must be a \(4,\) long tensor"):
        max_violation_loss(a, b, owner=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must have the same shape"):
        max_violation_loss(a, b[:3])
    with pytest.raises(ValueError, match=r"MaxViolationLoss: 'margin' must be a number > 0"):
        MaxViolationLoss(margin=-0.1)


# --------------------------------------------------------------------------- 2 processes

WORLD = 2
N, D = 8, 5  # full batch; each rank holds N // WORLD rows
CONFIGS = {
    "clip_grad": {"gather_with_grad": True, "local_loss": False},
    "clip_grad_local": {"gather_with_grad": True, "local_loss": True},
    "clip_nograd": {"gather_with_grad": False, "local_loss": False},
    "siglip": {},
}


def _full_batch() -> tuple[Tensor, Tensor]:
    return pair(N, D, seed=123)


G = 3  # positives per anchor in the multi-positive loss
MULTI = {
    "multi_grad": {"gather_with_grad": True, "local_loss": False},
    "multi_grad_local": {"gather_with_grad": True, "local_loss": True},
}


def _multi_batch() -> tuple[Tensor, Tensor, Tensor]:
    """N anchors and G rows of each, grouped by anchor (rank k holds a contiguous share)."""
    g = torch.Generator().manual_seed(7)
    return (
        torch.randn(N, D, generator=g),
        torch.randn(N * G, D, generator=g),
        (torch.arange(N).repeat_interleave(G)),
    )


def _make_loss(name: str, rank: int, world_size: int) -> torch.nn.Module:
    if name == "siglip":
        return SigLipLoss(rank, world_size, init_logit_scale=1.5, init_logit_bias=-2.0)
    return ClipLoss(rank, world_size, **CONFIGS[name], init_logit_scale=1.5)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),  # fail, not hang, if the other rank dies
    )
    try:
        a_full, b_full = _full_batch()
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        results = {}
        for name in CONFIGS:
            a = a_full[rows].clone().requires_grad_(True)
            b = b_full[rows].clone().requires_grad_(True)
            loss_fn = _make_loss(name, rank, WORLD)
            loss = loss_fn(a, b)
            loss.backward()
            results[name] = {
                "loss": loss.detach(),
                "a": a.grad,
                "b": b.grad,
                "params": {k: p.grad for k, p in loss_fn.named_parameters()},
            }
        a_full, b_full, owner_full = _multi_batch()
        for name, opts in MULTI.items():
            per = N // WORLD
            a = a_full[rows].clone().requires_grad_(True)
            b = b_full[rank * per * G : (rank + 1) * per * G].clone().requires_grad_(True)
            owner = owner_full[rank * per * G : (rank + 1) * per * G] - rank * per
            ctx = DistributedContext(rank, WORLD)
            loss = multi_positive_clip_loss(a, b, owner, 1.5, ctx=ctx, **opts)
            loss.backward()
            results[name] = {"loss": loss.detach(), "a": a.grad, "b": b.grad}
        a = a_full[rows].clone().requires_grad_(True)
        b = b_full[rank * per * G : (rank + 1) * per * G].clone().requires_grad_(True)
        loss = MaxViolationLoss(rank, WORLD, margin=0.5)(a, b, owner)
        loss.backward()
        results["max_violation"] = {"loss": loss.detach(), "a": a.grad, "b": b.grad}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        # both ranks done with every collective before either tears gloo down (a rank that
        # destroys the group while the other still talks to it can abort with SIGABRT)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_processes_match_one_process(name: str, two_process_results: list[dict]) -> None:
    a, b = _full_batch()
    a.requires_grad_(True)
    b.requires_grad_(True)
    loss_fn = _make_loss(name, 0, 1)
    full = loss_fn(a, b)
    full.backward()
    assert a.grad is not None and b.grad is not None
    per_rank = [res[name] for res in two_process_results]

    # The mean of the per-rank losses is the full-batch loss (each rank's equals it when
    # every rank computes the whole logit matrix).
    mean_loss = sum(r["loss"] for r in per_rank) / WORLD
    torch.testing.assert_close(mean_loss, full.detach(), atol=1e-6, rtol=0)
    if name in ("clip_grad", "clip_nograd"):
        for r in per_rank:
            torch.testing.assert_close(r["loss"], full.detach(), atol=1e-6, rtol=0)

    # Local embedding gradients: with a differentiable gather each rank gets world_size
    # times the full-batch gradient of its rows, which DDP's mean over ranks divides back;
    # without it (and a full logit matrix) each rank gets exactly the full-batch gradient.
    factor = 1.0 if name == "clip_nograd" else float(WORLD)
    for rank, r in enumerate(per_rank):
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        torch.testing.assert_close(r["a"] / factor, a.grad[rows], atol=1e-6, rtol=0)
        torch.testing.assert_close(r["b"] / factor, b.grad[rows], atol=1e-6, rtol=0)

    # Temperature (and bias): the mean over ranks, as DDP takes it, is the full gradient.
    for key, param in loss_fn.named_parameters():
        assert param.grad is not None
        mean_grad = sum(r["params"][key] for r in per_rank) / WORLD
        torch.testing.assert_close(mean_grad, param.grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(MULTI))
def test_two_processes_match_one_process_with_several_positives(
    name: str, two_process_results: list[dict]
) -> None:
    a, b, owner = _multi_batch()
    a.requires_grad_(True)
    b.requires_grad_(True)
    full = multi_positive_clip_loss(a, b, owner, 1.5)
    full.backward()
    assert a.grad is not None and b.grad is not None
    per_rank = [res[name] for res in two_process_results]
    mean_loss = sum(r["loss"] for r in per_rank) / WORLD
    torch.testing.assert_close(mean_loss, full.detach(), atol=1e-6, rtol=0)
    per = N // WORLD
    for rank, r in enumerate(per_rank):  # world_size times the full gradient (see above)
        torch.testing.assert_close(
            r["a"] / WORLD, a.grad[rank * per : (rank + 1) * per], atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            r["b"] / WORLD, b.grad[rank * per * G : (rank + 1) * per * G], atol=1e-6, rtol=0
        )


def test_two_processes_match_one_process_max_violation(two_process_results: list[dict]) -> None:
    a, b, owner = _multi_batch()
    a.requires_grad_(True)
    b.requires_grad_(True)
    full = max_violation_loss(a, b, margin=0.5, owner=owner)
    full.backward()
    assert a.grad is not None and b.grad is not None and full.item() > 0
    per = N // WORLD
    for rank, r in enumerate(res["max_violation"] for res in two_process_results):
        # every rank scores the whole global batch: its loss is the full loss, and its
        # rows get world_size times the full gradient (DDP's mean divides it back)
        torch.testing.assert_close(r["loss"], full.detach(), atol=1e-6, rtol=0)
        rows = slice(rank * per, (rank + 1) * per)
        torch.testing.assert_close(r["a"] / WORLD, a.grad[rows], atol=1e-6, rtol=0)
        brows = slice(rank * per * G, (rank + 1) * per * G)
        torch.testing.assert_close(r["b"] / WORLD, b.grad[brows], atol=1e-6, rtol=0)
