"""Training-time time-series augmentation (polymodal.layers.timeseries_augment) and its
wiring into the time-series encoders: identity at strength 0, seeded, training mode only,
shapes, padding and absent examples kept."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.data import Sample, collate
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.layers.timeseries_augment import (
    TimeSeriesAugment,
    build_timeseries_augment,
    jitter,
    random_rotation,
    random_scale,
    rotation_matrices,
    time_warp,
)
from polymodal.models.build import build_model
from polymodal.models.config import ModelConfig
from polymodal.training.params import module_generators

IMU = ModalitySpec("imu", ModalityKind.TIMESERIES, shape=(6,), sample_rate=50)
ALL_ON = {"rotation": 30.0, "scale": 0.2, "time_warp": 0.2, "jitter": 0.1}
TRIPLETS = [[0, 1, 2], [3, 4, 5]]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def series(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three 6-channel series of 40, 25 and 0 (absent) valid steps, zero-padded."""
    x = torch.randn(3, 40, 6, generator=gen(seed))
    mask = torch.arange(40)[None, :] < torch.tensor([[40], [25], [0]])
    return x * mask[..., None], mask


def test_every_transform_is_the_identity_at_strength_zero() -> None:
    x, mask = series()
    assert torch.equal(random_rotation(x, mask, 0.0, TRIPLETS, gen()), x)
    assert torch.equal(random_scale(x, mask, 0.0, TRIPLETS, gen()), x)
    assert torch.equal(time_warp(x, mask, 0.0, gen()), x)
    assert torch.equal(jitter(x, mask, 0.0, gen()), x)
    off = TimeSeriesAugment(channels=6)
    assert not off.active and torch.equal(off(x, mask), x)


@pytest.mark.parametrize("key", sorted(ALL_ON))
def test_each_transform_keeps_shape_padding_and_absent_examples(key: str) -> None:
    x, mask = series()
    out = TimeSeriesAugment(**{key: ALL_ON[key]}, channels=6)(x, mask)  # type: ignore[arg-type]
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert bool((out[1, 25:] == 0).all())  # padding stays zero
    assert torch.equal(out[2], x[2])  # an absent example is untouched
    assert not torch.equal(out[0], x[0])  # and it does change a present one


def test_deterministic_given_the_seed() -> None:
    x, mask = series()
    a, b, c = (TimeSeriesAugment(**ALL_ON, seed=s) for s in (5, 5, 6))  # type: ignore[arg-type]
    out = a(x, mask)
    assert torch.equal(out, b(x, mask))
    assert not torch.equal(out, c(x, mask))
    a.manual_seed(5)
    assert torch.equal(a(x, mask), out)


def test_rotation_matrices_are_orthonormal_with_determinant_one() -> None:
    axes = torch.randn(16, 3, generator=gen(), dtype=torch.float64)
    angles = torch.rand(16, generator=gen(1), dtype=torch.float64) * 2 * math.pi - math.pi
    rot = rotation_matrices(axes, angles)
    eye = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(16, dtype=torch.float64))
    # the axis is fixed, and the angle between x and R x is the angle (for x normal to it)
    torch.testing.assert_close((rot @ axes[..., None])[..., 0], axes)
    normal = torch.linalg.cross(axes, torch.randn(16, 3, generator=gen(2), dtype=torch.float64))
    turned = (rot @ normal[..., None])[..., 0]
    cos = (turned * normal).sum(1) / normal.norm(dim=1).square()
    torch.testing.assert_close(cos, angles.cos())


def test_rotation_keeps_each_triplets_norm_and_turns_both_alike() -> None:
    x, mask = series()
    x[..., 3:] = 2 * x[..., :3] * mask[..., None]  # the second triplet: twice the first
    out = random_rotation(x, mask, 90.0, TRIPLETS, gen())
    for g in TRIPLETS:
        torch.testing.assert_close(out[..., g].norm(dim=-1), x[..., g].norm(dim=-1))
    torch.testing.assert_close(out[..., 3:], 2 * out[..., :3])  # one rotation per example
    assert not torch.allclose(out[0, :, :3], x[0, :, :3])
    # channels outside the groups are kept
    only_first = random_rotation(x, mask, 90.0, [[0, 1, 2]], gen())
    assert torch.equal(only_first[..., 3:], x[..., 3:])


def test_scale_draws_one_factor_per_group_in_range() -> None:
    x = torch.ones(200, 5, 7)
    mask = torch.ones(200, 5, dtype=torch.bool)
    out = random_scale(x, mask, 0.25, [[0, 1, 2], [3, 4, 5]], gen())
    f = out[:, 0, :]  # (200, 7) the factors
    assert float(f.min()) >= 0.75 and float(f.max()) <= 1.25
    assert float(f.max() - f.min()) > 0.4  # the range is used
    assert torch.equal(out, f[:, None, :].expand_as(out))  # constant over time
    assert torch.equal(f[:, 0:3], f[:, :1].expand(-1, 3))  # a triplet shares its factor
    assert torch.equal(f[:, 3:6], f[:, 3:4].expand(-1, 3))
    assert not torch.equal(f[:, 0], f[:, 3]) and not torch.equal(f[:, 6], f[:, 0])


def test_time_warp_is_monotone_keeps_ends_and_length() -> None:
    t = 60
    ramp = torch.arange(t, dtype=torch.float32)[None, :, None].repeat(4, 1, 2)  # (4, T, 2)
    mask = torch.arange(t)[None, :] < torch.tensor([[60], [37], [1], [0]])
    out = time_warp(ramp * mask[..., None], mask, 0.5, gen())
    for i, n in enumerate([60, 37]):
        valid = out[i, :n, 0]
        assert bool((valid[1:] >= valid[:-1]).all())  # monotone: a ramp stays non-decreasing
        assert float(valid[0]) == 0.0 and float(valid[-1]) == pytest.approx(n - 1, abs=1e-4)
        assert not torch.allclose(valid, ramp[i, :n, 0])  # and it is warped
        assert bool((out[i, n:] == 0).all())
    assert torch.equal(out[2:], (ramp * mask[..., None])[2:])  # 1 step or absent: kept


def test_time_warp_speed_stays_within_its_bound() -> None:
    ramp = torch.arange(200, dtype=torch.float64)[None, :, None].repeat(8, 1, 1)
    mask = torch.ones(8, 200, dtype=torch.bool)
    out = time_warp(ramp, mask, 0.2, gen(3))
    slope = out[:, 1:, 0] - out[:, :-1, 0]  # (8, 199) source steps per output step
    # slopes lie in [0.8, 1.2] up to the rescaling that keeps the ends: within [0.8/1.2, 1.2/0.8]
    assert float(slope.min()) > 0.8 / 1.2 - 1e-6 and float(slope.max()) < 1.2 / 0.8 + 1e-6
    assert float(slope.max() - slope.min()) > 0.05


def test_jitter_std_is_the_fraction_of_each_channels_std() -> None:
    x = torch.randn(2, 4000, 3, generator=gen()) * torch.tensor([1.0, 5.0, 0.1])
    mask = torch.ones(2, 4000, dtype=torch.bool)
    mask[1, 3000:] = False
    x = x * mask[..., None]
    out = jitter(x, mask, 0.2, gen(1))
    noise = (out - x)[0]  # (4000, 3)
    ratio = noise.std(0) / x[0].std(0)
    torch.testing.assert_close(ratio, torch.full((3,), 0.2), atol=0.02, rtol=0)
    assert bool((out[1, 3000:] == 0).all())


def test_encoder_augments_in_training_only() -> None:
    x, mask = series()
    batch = ModalityBatch(x, mask.any(1), mask.sum(1), mask)
    for name, kw in (
        ("ts_cnn", {"channels": 8, "num_layers": 2}),
        ("ts_gru", {"hidden_dim": 8}),
        ("ts_transformer", {"num_layers": 1, "num_heads": 2}),
    ):
        torch.manual_seed(0)
        plain = build_encoder(name, IMU, dim=8, **kw)
        aug = build_encoder(name, IMU, dim=8, augment=ALL_ON, **kw)
        off = build_encoder(name, IMU, dim=8, augment={"rotation": 0}, **kw)
        aug.load_state_dict(plain.state_dict())
        off.load_state_dict(plain.state_dict())
        for m in (plain, aug, off):
            m.eval()
        assert torch.equal(plain(batch).pooled, aug(batch).pooled), name  # eval: unchanged
        for m in (plain, aug, off):
            m.train()
        assert not torch.allclose(plain(batch).pooled, aug(batch).pooled), name
        assert torch.equal(plain(batch).pooled, off(batch).pooled), name  # strength 0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"ts_cnn augment key 'rotate'.*Did you mean 'rotation'"):
        build_timeseries_augment({"rotate": 10}, "ts_cnn", 6)
    with pytest.raises(ValueError, match=r"ts_cnn augment: The 'rotation' augmentation must be"):
        build_timeseries_augment({"rotation": 200}, "ts_cnn", 6)
    with pytest.raises(ValueError, match="'scale' augmentation must be a number in"):
        build_timeseries_augment({"scale": 1.5}, "ts_gru", 6)
    with pytest.raises(ValueError, match="'jitter' augmentation must be a number in"):
        build_timeseries_augment({"jitter": -0.1}, "ts_gru", 6)
    with pytest.raises(ValueError, match="'time_warp' augmentation must be a number in"):
        build_timeseries_augment({"time_warp": True}, "ts_gru", 6)
    with pytest.raises(ValueError, match=r"series has 4 channels, not a multiple of 3.*"):
        build_timeseries_augment({"rotation": 10}, "ts_cnn", 4)
    assert build_timeseries_augment({"scale": 0.1}, "ts_cnn", 4) is not None  # no rotation
    four = build_timeseries_augment({"rotation": 10, "rotation_groups": [[1, 2, 3]]}, "x", 4)
    assert four is not None and four.groups == [[1, 2, 3]]
    for groups in ([[0, 1]], [[0, 1, 6]], [[0, 1, 2], [2, 3, 4]], [], "012", [[0, 1, 2.0]]):
        with pytest.raises(ValueError, match=r"'rotation_groups' augmentation must be a list"):
            build_timeseries_augment({"rotation": 10, "rotation_groups": groups}, "ts_cnn", 6)
    with pytest.raises(TypeError, match="'augment' parameter of ts_cnn must be a mapping"):
        build_timeseries_augment([0.1], "ts_cnn", 6)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ts_transformer augment key 'speed'"):
        build_encoder("ts_transformer", IMU, dim=8, augment={"speed": 0.1})
    with pytest.raises(ValueError, match="built for 6 channels but got values with 3"):
        TimeSeriesAugment(scale=0.1, channels=6)(torch.ones(1, 4, 3), torch.ones(1, 4).bool())


YAML = """
encoders:
  imu:
    name: ts_cnn
    params:
      dim: 8
      channels: 8
      num_layers: 2
      augment: {rotation: 20, rotation_groups: [[0, 1, 2], [3, 4, 5]], scale: 0.1,
                time_warp: 0.1, jitter: 0.05}
fusion: {name: early}
"""


def test_model_from_yaml_config_trains_a_step_and_seeds_from_the_run() -> None:
    schema = Schema((IMU,), TargetSpec("classification", 3))
    cfg = ModelConfig.from_yaml(YAML)
    samples = [
        Sample(f"ex{i}", {"imu": torch.randn(20 - 3 * i, 6, generator=gen(i))}, target=i % 3)
        for i in range(4)
    ]
    batch = collate(samples, schema)
    model = build_model(cfg, schema, seed=3)
    aug = model.encoders["imu"].augment
    assert isinstance(aug, TimeSeriesAugment) and aug.groups == TRIPLETS
    assert module_generators(model)["encoders.imu.augment:generator"] is aug.generator  # saved
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = torch.nn.functional.cross_entropy(model(batch).logits, batch.target)
    loss.backward()
    opt.step()
    assert math.isfinite(float(loss.detach()))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))

    def draws(seed: int) -> torch.Tensor:
        x, mask = series()
        return build_model(cfg, schema, seed=seed).encoders["imu"].augment(x, mask)

    assert torch.equal(draws(1), draws(1))
    assert not torch.equal(draws(1), draws(2))
