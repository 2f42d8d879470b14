"""Training-time image augmentation (polymodal.layers.image_augment) and its wiring into
image_cnn and image_vit: identity at strength 0, seeded, training mode only, the affine
map's geometry (direction of shifts, mirror, no distortion of non-square images), absent
images kept, errors that name the key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from polymodal.data.datasets.av_digits import read_idx
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.layers.image_augment import (
    ImageAugment,
    affine_matrices,
    build_image_augment,
    random_affine,
    random_brightness,
    random_contrast,
)
from polymodal.models.build import build_model
from polymodal.models.config import ModelConfig
from polymodal.training.params import module_generators

IMAGE = ModalitySpec("image", ModalityKind.IMAGE, shape=(3, 28, 28))
ALL_ON = {
    "rotation": 15.0,
    "scale": 0.1,
    "shear": 10.0,
    "translate": 0.1,
    "hflip": 0.5,
    "contrast": 0.3,
    "brightness": 0.3,
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 4, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=gen(seed))


def test_every_transform_is_the_identity_at_strength_zero() -> None:
    x = images()
    assert torch.equal(random_affine(x, gen()), x)
    assert torch.equal(random_contrast(x, 0.0, gen()), x)
    assert torch.equal(random_brightness(x, 0.0, gen()), x)
    off = ImageAugment()
    assert not off.active and torch.equal(off(x), x)


@pytest.mark.parametrize("key", sorted(ALL_ON))
def test_each_transform_keeps_shape_changes_present_images_and_keeps_absent_ones(
    key: str,
) -> None:
    x = images()
    present = torch.tensor([True, True, False, True])
    out = ImageAugment(**{key: ALL_ON[key]}, seed=1)(x, present)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert torch.equal(out[2], x[2])  # absent: as it was
    assert not torch.allclose(out[present], x[present])


def test_deterministic_given_the_seed() -> None:
    x = images()
    assert torch.equal(ImageAugment(**ALL_ON, seed=3)(x), ImageAugment(**ALL_ON, seed=3)(x))
    assert not torch.equal(ImageAugment(**ALL_ON, seed=3)(x), ImageAugment(**ALL_ON, seed=4)(x))


def test_hflip_mirrors_exactly() -> None:
    x = images()
    assert torch.allclose(random_affine(x, gen(), hflip=1.0), x.flip(-1), atol=1e-5)


def test_rotation_is_a_rotation_in_pixel_units_on_a_non_square_image() -> None:
    h, w, bound = 10, 30, 40.0
    theta = affine_matrices(64, h, w, gen(), rotation=bound)
    half = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
    pix = theta[:, :, :2] * half[None, :, None] / half[None, None, :]  # D @ A @ D^-1
    eye = torch.eye(2, dtype=torch.float64).expand(64, 2, 2)
    assert torch.allclose(pix @ pix.transpose(1, 2), eye, atol=1e-9)  # orthogonal
    assert torch.allclose(torch.linalg.det(pix), torch.ones(64, dtype=torch.float64))
    angles = torch.atan2(pix[:, 1, 0], pix[:, 0, 0]).abs() * 180 / math.pi
    assert float(angles.max()) <= bound and float(angles.max()) > bound / 2
    assert torch.equal(theta[:, :, 2], torch.zeros(64, 2, dtype=torch.float64))  # no shift


def test_translate_moves_a_real_digit_by_the_drawn_shift(data_root: Path) -> None:
    # an MNIST digit's centre of mass moves by the drawn shift, in the drawn direction
    digits = read_idx(data_root / "mnist" / "t10k-images-idx3-ubyte.gz")[:16]
    x = torch.from_numpy(digits.astype("float32") / 255.0)[:, None].repeat(1, 3, 1, 1)
    moved = random_affine(x, gen(5), translate=0.1)
    theta = affine_matrices(16, 28, 28, gen(5), translate=0.1)
    shift_px = -theta[:, :, 2].float() * 14.0  # (B, 2) x, y in pixels

    def centre(img: torch.Tensor) -> torch.Tensor:
        mass = img[:, 0]  # (B, H, W)
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        total = mass.sum((1, 2))
        return torch.stack([(mass * xs).sum((1, 2)) / total, (mass * ys).sum((1, 2)) / total], 1)

    assert float(shift_px.abs().max()) <= 2.8 + 1e-6 and float(shift_px.abs().max()) > 1.0
    assert torch.allclose(centre(moved) - centre(x), shift_px, atol=0.35)


def test_contrast_keeps_each_mean_and_brightness_shifts_it_within_its_bound() -> None:
    x = images(8)
    c = random_contrast(x, 0.5, gen())
    assert torch.allclose(c.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)
    ratio = c.std((1, 2, 3)) / x.std((1, 2, 3))
    assert float(ratio.min()) >= 0.5 - 1e-5 and float(ratio.max()) <= 1.5 + 1e-5
    b = random_brightness(x, 0.4, gen())
    moved = (b - x).mean((1, 2, 3)) / x.flatten(1).std(1, correction=0)
    assert float(moved.abs().max()) <= 0.4 + 1e-5 and float(moved.abs().max()) > 0.1
    assert torch.allclose(b.std((1, 2, 3)), x.std((1, 2, 3)), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "kw"), [("image_cnn", {"channels": (4, 8)}), ("image_vit", {"num_layers": 1})]
)
def test_encoder_augments_in_training_only(name: str, kw: dict[str, object]) -> None:
    x = images()
    batch = ModalityBatch(x, torch.ones(4, dtype=torch.bool))
    torch.manual_seed(0)
    plain = build_encoder(name, IMAGE, dim=8, **kw)
    aug = build_encoder(name, IMAGE, dim=8, augment=ALL_ON, **kw)
    off = build_encoder(name, IMAGE, dim=8, augment={"rotation": 0}, **kw)
    aug.load_state_dict(plain.state_dict())
    off.load_state_dict(plain.state_dict())
    for m in (plain, aug, off):
        m.eval()
    assert torch.equal(plain(batch).pooled, aug(batch).pooled)  # eval: unchanged
    for m in (plain, aug, off):
        m.train()
    assert not torch.allclose(plain(batch).pooled, aug(batch).pooled)
    assert torch.equal(plain(batch).pooled, off(batch).pooled)  # strength 0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(
        ValueError, match=r"image_cnn augment key 'rotate'.*Did you mean 'rotation'"
    ):
        build_image_augment({"rotate": 10}, "image_cnn")
    with pytest.raises(ValueError, match=r"image_cnn augment: The 'rotation' augmentation must be"):
        build_image_augment({"rotation": 200}, "image_cnn")
    with pytest.raises(ValueError, match="'translate' augmentation must be a number in"):
        build_image_augment({"translate": 0.6}, "image_vit")
    with pytest.raises(ValueError, match="'hflip' augmentation must be a number in"):
        build_image_augment({"hflip": True}, "image_vit")
    with pytest.raises(TypeError, match="'augment' parameter of image_cnn must be a mapping"):
        build_image_augment([0.1], "image_cnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_vit augment key 'speed'"):
        build_encoder("image_vit", IMAGE, dim=8, augment={"speed": 0.1})


YAML = """
encoders:
  image:
    name: image_cnn
    params: {dim: 8, channels: [4, 8], augment: {rotation: 10, scale: 0.1, translate: 0.1}}
fusion: {name: early}
"""


def test_model_from_yaml_config_seeds_its_augmentation_from_the_run() -> None:
    schema = Schema((IMAGE,), TargetSpec("classification", 3))
    cfg = ModelConfig.from_yaml(YAML)
    model = build_model(cfg, schema, seed=3)
    aug = model.encoders["image"].augment
    assert isinstance(aug, ImageAugment) and aug.rotation == 10.0
    assert module_generators(model)["encoders.image.augment:generator"] is aug.generator  # saved

    def draws(seed: int) -> torch.Tensor:
        return build_model(cfg, schema, seed=seed).encoders["image"].augment(images())

    assert torch.equal(draws(1), draws(1))
    assert not torch.equal(draws(1), draws(2))


def test_video_frame_encoders_refuse_augmentation() -> None:
    video = ModalitySpec("clip", ModalityKind.VIDEO, shape=(3, 28, 28))
    with pytest.raises(ValueError, match=r"video_gru: frame_kwargs.augment is not supported"):
        build_encoder("video_gru", video, dim=8, frame_kwargs={"augment": {"rotation": 5}})
