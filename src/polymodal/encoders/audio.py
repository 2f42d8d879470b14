"""Audio encoders: a log-mel front end (computed in torch) and a masked sequence model.

The batch holds padded mono waveforms (B, T) with ``lengths``/``mask`` in samples.
:class:`~polymodal.layers.melspec.LogMelSpectrogram` turns them into log-mel frames
(B, F, n_mels) with a frame mask (B, F) (25 ms Hann windows every 10 ms by default,
derived from ``spec.sample_rate``); each utterance's frames are then normalised over its
valid frames (``cmvn``: ``"utterance"``, one mean/std per utterance, the default;
``"band"``, one per mel band; ``"none"``), and a sequence model maps them to (B, F', D).
Outputs are one vector per (possibly downsampled) frame; pooling is a masked mean
(``pool="stats"``: a linear map of the masked mean and standard deviation).  The
normalised log-mel of each clip is cached in memory (``cache_mb``, keyed by the clip's
samples), so a clip seen again in a later epoch skips the STFT; outputs are the same.

* ``audio_cnn``: 2-D convolutions over (mel, time) that stride 2 along mel and
  ``time_stride`` along time, each normalised per utterance over its valid frames, then a
  mean over frequency (``freq_pool="flatten"``: each frame's (channel, mel row) values
  mapped to D): a sequence over time at ``hop * time_stride ** len(channels)``.
* ``audio_gru``: a bidirectional GRU over packed mel frames.
* ``audio_transformer``: a transformer over mel frames with a key padding mask.
* ``audio_logmel`` (in :mod:`polymodal.encoders.audio_logmel`): no sequence model and no
  weights: one fixed vector per clip, for projections or classifiers on cached features.

``augment`` (every builder here) adds training-time augmentation
(:class:`~polymodal.layers.audio_augment.AudioAugment`: speed, leading silence, gain and
noise on the waveform, a mel-axis warp and SpecAugment's masks on the normalised log-mel),
applied only in training mode and drawn from a generator seeded by the run's seed.

``speaker_norm`` (every builder here; off by default) standardises each normalised log-mel
band by its speaker's mean and standard deviation over all the speaker's clips (the data
set's groups), as ``audio_ge2e(speaker_norm=true)`` does with its states:
:func:`polymodal.inference.calibrate_groups` reads each group's unlabelled clips once, so
at test time the statistics of a held-out speaker come from that speaker's own test clips
(transductive: labels are never read, but the whole test speaker's audio is).

Issue 13 (a user's audio_cnn near chance for its first epochs on acted emotional speech):
with the fixed floor of 1e-6 of full-scale power, over half of a RAVDESS clip's log-mel
values sit at that one floor, and averaging the CNN's features over mel rows and frames
gives every clip nearly the same vector at initialisation (mean pairwise cosine 0.99 over
RAVDESS clips).  ``top_db=80`` (a floor 80 dB below each clip's peak),
``freq_pool="flatten"`` and ``pool="stats"`` bring that to 0.97-0.98, but
``benchmarks/raw_audio.py`` (actor-held-out, 2 seeds) found little gain from them (0.31
vs 0.30); ``init="kaiming"`` gave 0.35; all stay below an MFCC logistic regression (0.40).
They are options (defaults kept for the published av_digits runs); the caches (and
:class:`~polymodal.data.manifest.ManifestDataset`'s ``cache_mb``) changed for every user.

Why ``cmvn="utterance"`` by default: per-band CMVN gives every band of every utterance
mean 0 and variance 1, which erases the utterance's average spectrum; for long speech that
removes the channel, but a clip of one spoken word (FSDD: 0.14-2.3 s) *is* mostly that
spectrum.  On FSDD, speaker-held-out, a logistic regression on 16 time-averaged segments of
log-mel reaches 0.71 test accuracy after per-band CMVN and 0.87 after utterance-level
standardisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.cache import FeatureCache, content_key
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, GroupStats, masked_mean
from polymodal.encoders.timeseries import (
    SequenceGRU,
    SequenceTransformer,
    check_dim,
    check_spec,
    sequence_mask,
    tensor_values,
    zero_invalid,
)
from polymodal.layers.audio_augment import AudioAugment, build_augment
from polymodal.layers.dropout import Dropout
from polymodal.layers.melspec import (
    LogMelSpectrogram,
    Spectrogram,
    masked_standardize,
    masked_utterance_standardize,
)

CMVN_MODES = ("utterance", "band", "none")
FREQ_POOLS = ("flatten", "mean")
POOLS = ("stats", "mean")


def sample_rate_of(spec: ModalitySpec, sample_rate: float | None, encoder: str) -> float:
    sr = spec.sample_rate if sample_rate is None else sample_rate
    if sr is None or sr <= 0:
        raise ValueError(
            f"{encoder} needs the audio sample rate to size its 25 ms windows: spec "
            f"{spec.name!r} has sample_rate={spec.sample_rate!r}. Set ModalitySpec.sample_rate "
            "(Hz) or pass sample_rate=..."
        )
    return float(sr)


class FrameSequence(NamedTuple):
    """Frames out of a backbone that changes the frame rate.

    Attributes:
        values: (B, F', D), zeros at invalid frames.
        mask: (B, F') bool, True at valid frames.
    """

    values: Tensor
    mask: Tensor


def downsample_mask(mask: Tensor, stride: int, length: int) -> Tensor:
    """Frame mask after a stride-``stride`` convolution (kernel 3, padding 1) over time.

    Output frame ``j`` is centred on input frame ``j * stride``; it is valid when that input
    frame is, so ``n`` valid frames become ``ceil(n / stride)``.

    Shape:
        mask: (B, F) bool, valid frames first
        output: (B, length) bool
    """
    n = mask.sum(1, keepdim=True)  # (B, 1)
    return torch.arange(length, device=mask.device)[None, :] * stride < n  # (B, length)


class MaskedMapNorm(nn.Module):
    """Per-example normalisation of a (B, C, H, W) map over its valid columns.

    Each example's map is standardised with one mean and variance over channels, rows and
    the columns where ``mask`` is True (GroupNorm with one group, restricted to valid time
    steps), then scaled and shifted per channel; invalid columns come out as zeros.  So the
    result depends neither on padding nor on the rest of the batch, and, unlike a LayerNorm
    over channels at each position, it keeps how strong one time-frequency position is
    relative to another (a per-position norm rescales a quiet patch to the same size as a
    loud one).

    Args:
        channels: C.
        eps: added to the variance.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Shape:
        x: (B, C, H, W)
        mask: (B, W) bool
        output: (B, C, H, W)
        """
        m = mask.to(x.dtype)[:, None, None, :]  # (B, 1, 1, W)
        count = (m.sum((1, 2, 3), keepdim=True) * x.shape[1] * x.shape[2]).clamp_min(1.0)
        mean = (x * m).sum((1, 2, 3), keepdim=True) / count  # (B, 1, 1, 1)
        var = ((x - mean).square() * m).sum((1, 2, 3), keepdim=True) / count  # (B, 1, 1, 1)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return (y * self.weight[:, None, None] + self.bias[:, None, None]) * m


class MelConv2d(nn.Module):
    """2-D conv blocks over (mel, time), then a mean over mel: a (shorter) sequence over time.

    Each block is conv3x3 (stride 2 along mel, ``time_stride`` along time) -> per-utterance
    :class:`MaskedMapNorm` -> GELU -> dropout; invalid frames are zeroed before every
    convolution, so an utterance's valid frames never see padding.  With ``k`` blocks a frame
    out covers ``time_stride ** k`` input frames and (stride > 1) sees ``1 + 2 (time_stride ** k -
    1) / (time_stride - 1)`` of them (31 frames = 0.3 s for 4 blocks at stride 2), enough
    for a spoken word's syllables; with ``time_stride=1`` each output frame sees only
    ``1 + 2 k`` frames (70 ms for 3 blocks), and the masked mean over time then reduces the
    model to a bag of short frames.  No defaults here: ``audio_cnn`` holds them.

    Args:
        n_mels: mel bands of the input.
        out_dim: output features D.
        channels: output channels of each block.
        dropout: dropout after each block.
        time_stride: stride along time of each block (1 keeps the input frame rate).
        freq_pool: ``"flatten"``: each output frame is a linear map of every (channel, mel
            row) of the last block, so where in the spectrum a pattern lies (pitch,
            formants) reaches the output; ``"mean"``: the mean over mel rows first
            (``audio_cnn``'s default; it keeps only which patterns occur, and at
            initialisation maps every clip to nearly the same vector, cosine ~0.99 on
            RAVDESS, yet it learned as well in ``benchmarks/raw_audio.py``).

        init: ``"default"``: PyTorch's initialisation (what the published av_digits runs
            used); ``"kaiming"``: Kaiming-normal convolutions (fan-out) with zero biases
            (measured in ``benchmarks/raw_audio.py``).
    """

    def __init__(
        self,
        n_mels: int,
        out_dim: int,
        channels: Sequence[int],
        dropout: float,
        time_stride: int,
        freq_pool: str = "mean",
        init: str = "default",
    ) -> None:
        super().__init__()
        if init not in ("default", "kaiming"):
            raise ValueError(
                f"The 'init' parameter of audio_cnn must be 'default' or 'kaiming'; got {init!r}."
            )
        if not channels:
            raise ValueError("audio_cnn channels must list at least one block width, got ()")
        if isinstance(time_stride, bool) or not isinstance(time_stride, int) or time_stride < 1:
            raise ValueError(
                f"The 'time_stride' parameter of audio_cnn must be an int >= 1 (2 halves the "
                f"frame rate at each block, 1 keeps it); got {time_stride!r}."
            )
        if freq_pool not in FREQ_POOLS:
            raise ValueError(
                f"The 'freq_pool' parameter of audio_cnn must be one of {list(FREQ_POOLS)}; "
                f"got {freq_pool!r}."
            )
        self.time_stride = time_stride
        self.freq_pool = freq_pool
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in, rows = 1, n_mels
        for c in channels:
            conv = nn.Conv2d(c_in, c, 3, stride=(2, time_stride), padding=1)
            if init == "kaiming":
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
            self.convs.append(conv)
            self.norms.append(MaskedMapNorm(c))
            c_in, rows = c, (rows - 1) // 2 + 1
        self.drop = Dropout(dropout)
        self.proj = nn.Linear(c_in * rows if freq_pool == "flatten" else c_in, out_dim)

    def forward(self, x: Tensor, mask: Tensor) -> FrameSequence:
        """Shape:
        x: (B, F, n_mels) frames
        mask: (B, F) bool, valid frames first
        output.values: (B, F', D), zeros at invalid frames; F' = ceil(F / time_stride^k)
        output.mask: (B, F') bool
        """
        h = x.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, F)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = conv(h * mask.to(h.dtype)[:, None, None, :])  # (B, c, n_mels', F')
            mask = downsample_mask(mask, self.time_stride, h.shape[-1])  # (B, F')
            h = self.drop(F.gelu(norm(h, mask)))  # (B, c, n_mels', F')
        h = h * mask.to(h.dtype)[:, None, None, :]  # (B, c, rows, F')
        if self.freq_pool == "flatten":
            h = h.flatten(1, 2).transpose(1, 2)  # (B, F', c * rows)
        else:
            h = h.mean(2).transpose(1, 2)  # (B, F', c)
        return FrameSequence(zero_invalid(self.proj(h), mask), mask)  # (B, F', D)


def _check_cmvn(cmvn: str | bool, encoder: str) -> str:
    """The CMVN mode; ``True``/``False`` are read as ``"band"``/``"none"`` (the old flag)."""
    if isinstance(cmvn, bool):
        return "band" if cmvn else "none"
    if cmvn not in CMVN_MODES:
        raise ValueError(
            f"The 'cmvn' parameter of {encoder} must be one of {list(CMVN_MODES)}; got "
            f"{cmvn!r}. 'utterance' standardises each clip with one mean/std, 'band' each "
            "mel band of it, 'none' leaves log-mel as it is."
        )
    return cmvn


class AudioEncoder(Encoder):
    """Log-mel front end + per-utterance normalisation + a masked sequence backbone.

    Args:
        name: the registered encoder name (for messages).
        melspec: the front end.
        backbone: maps ((B, F, n_mels), (B, F) mask) to (B, F, D), or to a
            :class:`FrameSequence` (values (B, F', D), mask (B, F')) when it changes the
            frame rate.
        out_dim: D.
        cmvn: ``"utterance"`` (one mean/std over each utterance's valid frames and all
            bands: removes gain, keeps the spectral shape), ``"band"`` (per mel band, classic
            CMVN) or ``"none"``; ``True``/``False`` mean ``"band"``/``"none"``.
        pool: ``"stats"``: the pooled vector is a linear map of the masked mean and standard
            deviation over valid frames (statistics pooling, as in x-vectors: how much a
            clip varies over time); ``"mean"``: the masked mean alone (the builders'
            default).
        cache_mb: MiB of an in-memory cache of each clip's normalised log-mel, keyed by
            the clip's samples (:class:`~polymodal.data.cache.FeatureCache`,
            least recently used first out): the front end has no trainable parameter and
            no randomness, so from the second epoch on a clip skips the STFT.  0 turns it
            off; it is bypassed when the waveform itself needs a gradient.
        speaker_norm: standardise each mel band by the example's group's (speaker's) mean
            and std (set by :func:`polymodal.inference.calibrate_groups`, applied after
            ``cmvn``); ``forward`` then needs the example ids.
        augment: training-time augmentation, or ``None``; in training mode (when any of
            its strengths is non-zero) each batch's waveforms and log-mel frames go
            through it and the cache is bypassed; in eval mode it does nothing.
    """

    kind = ModalityKind.AUDIO

    def __init__(
        self,
        name: str,
        melspec: LogMelSpectrogram,
        backbone: nn.Module,
        out_dim: int,
        cmvn: str | bool,
        pool: str = "mean",
        cache_mb: float = 0.0,
        augment: AudioAugment | None = None,
        speaker_norm: bool = False,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(
                f"The 'pool' parameter of {name} must be one of {list(POOLS)}; got {pool!r}. "
                "'stats' pools the mean and std over frames, 'mean' the mean alone."
            )
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, int | float) or cache_mb < 0:
            raise ValueError(
                f"The 'cache_mb' parameter of {name} must be a number >= 0 (MiB of cached "
                f"log-mel; 0: no cache); got {cache_mb!r}."
            )
        self.name = name
        self.melspec = melspec
        self.backbone = backbone
        self.out_dim = out_dim
        self.cmvn = _check_cmvn(cmvn, name)
        self.pool = pool
        self.pool_proj = nn.Linear(2 * out_dim, out_dim) if pool == "stats" else None
        cacheable = not any(p.requires_grad for p in melspec.parameters())
        self.cache = FeatureCache(int(cache_mb * 2**20) if cacheable else 0)
        self.augment = augment
        self.uses_groups = bool(speaker_norm)
        self.groups = GroupStats(f"{name}(speaker_norm=true)", melspec.n_mels)

    @torch.no_grad()
    def moments(self, batch: ModalityBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Per example, the valid frame count, sum and sum of squares of the normalised
        log-mel (float64; zeros where the example lacks the modality): what
        :func:`polymodal.inference.calibrate_groups` adds up per group.

        Shape:
            output: n (B,), sum (B, n_mels), sum of squares (B, n_mels)
        """
        wave = tensor_values(batch, self.name, "(B, T) mono waveforms", 2)
        sample_mask = sequence_mask(batch, wave, self.name)  # (B, T)
        feats, mask = self.cached_features(wave, sample_mask.sum(1))  # (B, F, n_mels), (B, F)
        m = (mask & batch.present.to(mask.device, torch.bool)[:, None]).to(torch.float64)
        x = feats.to(torch.float64) * m.unsqueeze(-1)  # (B, F, n_mels)
        return m.sum(1), x.sum(1), (x * feats.to(torch.float64)).sum(1)

    def set_group_stats(
        self, group_of: dict[str, str], stats: dict[str, tuple[Tensor, Tensor]]
    ) -> None:
        """Add example ids' groups and groups' (mean, std) of the log-mel, each (n_mels,)."""
        self.groups.update(group_of, stats)

    def known_ids(self) -> set[str]:
        """The example ids whose group statistics are set."""
        return self.groups.known_ids()

    def features(self, wave: Tensor, lengths: Tensor) -> Spectrogram:
        """Normalised log-mel frames of padded waveforms (the front end, uncached).

        Shape:
            wave: (B, T); lengths: (B,) samples
            output.features: (B, F, n_mels), F = T // hop + 1; output.mask: (B, F)
        """
        spec = self.melspec(wave, lengths)
        feats, mask = spec.features, spec.mask  # (B, F, n_mels), (B, F)
        if self.cmvn == "utterance":
            feats = masked_utterance_standardize(feats, mask)
        elif self.cmvn == "band":
            feats = masked_standardize(feats, mask)
        return Spectrogram(feats, mask)

    def cached_features(self, wave: Tensor, lengths: Tensor) -> Spectrogram:
        """:meth:`features`, reading each clip's frames from the cache when it holds them.

        A clip's frames do not depend on the batch it comes in (see
        :class:`~polymodal.layers.melspec.LogMelSpectrogram`), so the clips missing from
        the cache are computed together, stored one by one, and every clip is then copied
        into the batch's padded layout.
        """
        if self.cache.max_bytes == 0 or wave.requires_grad:
            return self.features(wave, lengths)
        b, t = wave.shape
        lengths = lengths.long().clamp(0, t)
        frames = self.melspec.num_frames(lengths).tolist()
        keys = [content_key(wave[i, :n]) if n > 0 else "" for i, n in enumerate(lengths.tolist())]
        found = {i: self.cache.get(k) for i, k in enumerate(keys) if k}
        todo = [i for i, v in found.items() if v is None]
        if todo:
            n_max = int(lengths[todo].max())
            spec = self.features(wave[todo, :n_max], lengths[todo])
            for j, i in enumerate(todo):
                clip = spec.features[j, : frames[i]]  # (F_i, n_mels)
                self.cache.put(keys[i], clip)
                found[i] = clip
        n_frames = t // self.melspec.hop_length + 1
        feats = wave.new_zeros(b, n_frames, self.melspec.n_mels)  # (B, F, n_mels)
        for i, v in found.items():
            if v is not None:
                feats[i, : v.shape[0]] = v.to(feats.device)
        mask = torch.arange(n_frames, device=wave.device)[None, :] < torch.tensor(
            frames, device=wave.device
        ).view(b, 1)
        return Spectrogram(feats, mask)

    def forward(self, batch: ModalityBatch, ids: Sequence[str] | None = None) -> EncoderOutput:
        """Encode padded waveforms; outputs are per (downsampled) mel frame.

        Args:
            batch: the audio modality of a batch.
            ids: the B example ids (needed with ``speaker_norm``; ignored otherwise).

        Shape:
            batch.values: (B, T) waveforms
            batch.lengths: (B,) samples (or batch.mask: (B, T))
            output.sequence: (B, F', D) with F' = T // hop + 1 for audio_gru and
            audio_transformer, ceil((T // hop + 1) / time_stride ** len(channels)) for
            audio_cnn; output.mask: (B, F'); output.pooled: (B, D)
        """
        wave = tensor_values(batch, self.name, "(B, T) mono waveforms", 2)
        sample_mask = sequence_mask(batch, wave, self.name)  # (B, T)
        lengths = sample_mask.sum(1)  # (B,)
        augment = self.training and self.augment is not None and self.augment.active
        if augment:
            wave, lengths = self.augment.waveform(wave, lengths)  # type: ignore[union-attr]
            feats, mask = self.features(wave, lengths)  # (B, F, n_mels), (B, F)
        else:
            feats, mask = self.cached_features(wave, lengths)  # (B, F, n_mels), (B, F)
        if self.uses_groups:
            feats = self.groups.normalize(feats, ids) * mask.unsqueeze(-1).to(feats.dtype)
        if augment:
            feats = self.augment.spectrogram(feats, mask)  # type: ignore[union-attr]
        out = self.backbone(feats, mask)
        if isinstance(out, FrameSequence):
            seq, mask = out.values, out.mask  # (B, F', D), (B, F')
        else:
            seq = out  # (B, F, D)
        mean = masked_mean(seq, mask)  # (B, D)
        if self.pool_proj is None:
            return EncoderOutput(seq, mask, mean)
        m = mask.unsqueeze(-1).to(seq.dtype)  # (B, F', 1)
        var = ((seq - mean[:, None]).square() * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)
        std = torch.sqrt(var + 1e-5)  # (B, D)
        pooled = self.pool_proj(torch.cat([mean, std], dim=-1))  # (B, D)
        return EncoderOutput(seq, mask, zero_absent(pooled, mask))


def zero_absent(pooled: Tensor, mask: Tensor) -> Tensor:
    """Zeros for examples with no valid frame (an absent clip stays a zero vector).

    Shape:
        pooled: (B, D); mask: (B, F) bool; output: (B, D)
    """
    return pooled * mask.any(1, keepdim=True).to(pooled.dtype)


def _melspec(
    spec: ModalitySpec,
    sample_rate: float | None,
    n_mels: int,
    win_ms: float,
    hop_ms: float,
    top_db: float | None,
    encoder: str,
) -> LogMelSpectrogram:
    sr = sample_rate_of(spec, sample_rate, encoder)
    # With a floor relative to the clip (top_db), the absolute floor only guards log(0).
    floor = 1e-6 if top_db is None else 1e-10
    return LogMelSpectrogram(
        sr, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms, log_floor=floor, top_db=top_db
    )


@ENCODERS.register(
    "audio_cnn",
    "log-mel + 2-D CNN over (mel, time), a sequence over frames",
    kind=ModalityKind.AUDIO,
)
def audio_cnn(
    spec: ModalitySpec,
    dim: int = 128,
    channels: Sequence[int] = (32, 64, 128, 128),
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    dropout: float = 0.0,
    cmvn: str | bool = "utterance",
    sample_rate: float | None = None,
    time_stride: int = 2,
    freq_pool: str = "mean",
    pool: str = "mean",
    top_db: float | None = None,
    cache_mb: float = 256.0,
    init: str = "default",
    augment: dict[str, Any] | None = None,
    speaker_norm: bool = False,
) -> Encoder:
    """Blocks stride 2 along mel and ``time_stride`` along time (see :class:`MelConv2d`).

    ``freq_pool="flatten", pool="stats", top_db=80`` keep clips apart at initialisation
    but did not learn better on RAVDESS (see the module's notes); ``cache_mb`` caches each
    clip's log-mel (see :class:`AudioEncoder`); ``augment`` maps augmentation names to
    strengths (see :class:`~polymodal.layers.audio_augment.AudioAugment`), e.g.
    ``{speed: 0.1, freq_masks: 2, freq_width: 4}``.
    """
    check_spec(spec, "audio_cnn")
    check_dim(dim, "audio_cnn")
    mel = _melspec(spec, sample_rate, n_mels, win_ms, hop_ms, top_db, "audio_cnn")
    backbone = MelConv2d(n_mels, dim, channels, dropout, time_stride, freq_pool, init)
    aug = build_augment(augment, "audio_cnn")
    return AudioEncoder("audio_cnn", mel, backbone, dim, cmvn, pool, cache_mb, aug, speaker_norm)


@ENCODERS.register(
    "audio_gru", "log-mel + bidirectional GRU over packed frames", kind=ModalityKind.AUDIO
)
def audio_gru(
    spec: ModalitySpec,
    dim: int = 128,
    hidden_dim: int = 128,
    num_layers: int = 2,
    bidirectional: bool = True,
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    dropout: float = 0.0,
    cmvn: str | bool = "utterance",
    sample_rate: float | None = None,
    pool: str = "mean",
    top_db: float | None = None,
    cache_mb: float = 256.0,
    augment: dict[str, Any] | None = None,
    speaker_norm: bool = False,
) -> Encoder:
    """A (bi)GRU over standardised log-mel frames, projected to ``dim``."""
    check_spec(spec, "audio_gru")
    check_dim(dim, "audio_gru")
    mel = _melspec(spec, sample_rate, n_mels, win_ms, hop_ms, top_db, "audio_gru")
    backbone = SequenceGRU(n_mels, dim, hidden_dim, num_layers, bidirectional, dropout)
    aug = build_augment(augment, "audio_gru")
    return AudioEncoder("audio_gru", mel, backbone, dim, cmvn, pool, cache_mb, aug, speaker_norm)


@ENCODERS.register(
    "audio_transformer", "log-mel + transformer encoder over frames", kind=ModalityKind.AUDIO
)
def audio_transformer(
    spec: ModalitySpec,
    dim: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_ratio: float = 4.0,
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    dropout: float = 0.0,
    cmvn: str | bool = "utterance",
    sample_rate: float | None = None,
    pool: str = "mean",
    top_db: float | None = None,
    cache_mb: float = 256.0,
    augment: dict[str, Any] | None = None,
    speaker_norm: bool = False,
) -> Encoder:
    """Linear frame embedding, sinusoidal positions and a pre-norm transformer."""
    check_spec(spec, "audio_transformer")
    check_dim(dim, "audio_transformer")
    mel = _melspec(spec, sample_rate, n_mels, win_ms, hop_ms, top_db, "audio_transformer")
    backbone = SequenceTransformer(n_mels, dim, num_layers, num_heads, mlp_ratio, dropout)
    aug = build_augment(augment, "audio_transformer")
    return AudioEncoder(
        "audio_transformer", mel, backbone, dim, cmvn, pool, cache_mb, aug, speaker_norm
    )
