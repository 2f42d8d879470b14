"""The GE2E speaker encoder with Resemblyzer's pretrained weights.

Used twice: speaker embeddings per speech segment (:mod:`polymodal.featurize.voice`) and,
through :meth:`SpeakerEncoder.frame_states`, the frozen ``audio_ge2e`` encoder
(:mod:`polymodal.encoders.voice`).

Resemblyzer (Resemble AI, Apache-2.0) ships a GE2E speaker encoder (Wan et al. 2018,
"Generalized end-to-end loss for speaker verification") trained on LibriSpeech, VoxCeleb
1 and 2, in its wheel as ``resemblyzer/pretrained.pt``.  Its package cannot be imported
here (``import resemblyzer`` imports ``webrtcvad``, which imports ``pkg_resources``, gone
from current setuptools), so this module re-implements its network and front end and
loads only the weight file, with ``torch.load(weights_only=True)``:

- front end (``resemblyzer/audio.py``): 16 kHz, a 25 ms Hann window (``n_fft = 400``),
  10 ms hop, centred frames with zero padding, the power spectrum through 40 Slaney-scale,
  Slaney-normalised mel filters (librosa's ``filters.mel``); *not* a log-mel;
- network (``resemblyzer/voice_encoder.py``): a 3-layer LSTM (40 -> 256), the last
  layer's final hidden state through ``Linear(256, 256)`` and a ReLU, L2-normalised;
- utterance embedding: partial windows of 160 frames (1.6 s) every
  ``round(16000 / 1.3 / 160) = 77`` frames (``rate = 1.3`` partials per second, about 50 %
  overlap), the last one kept when it is at least 75 % covered (zero padding), the mean
  of the partial embeddings L2-normalised;
- volume: Resemblyzer raises quiet audio to -30 dBFS RMS before embedding (never lowers
  it); we do the same per segment.  Its webrtcvad trimming of long silences is left out:
  segments come from silero-vad already.

Checked against Resemblyzer 0.1.4's own ``VoiceEncoder.embed_utterance`` on GRID clips
(the same 16 kHz input): cosine similarity > 0.9999.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.layers.melspec import mel_filterbank

SAMPLE_RATE = 16000
N_MELS = 40
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
EMBEDDING_DIM = 256
TARGET_DBFS = -30.0

_INSTALL_HINT = 'pip install "polymodal[video]" (it installs Resemblyzer==0.1.4)'


def resemblyzer_weights_path() -> Path:
    """Path of ``resemblyzer/pretrained.pt`` inside the installed package (never imported).

    Raises:
        ImportError: Resemblyzer is not installed, or its wheel lacks the weight file.
    """
    spec = importlib.util.find_spec("resemblyzer")
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise ImportError(f"Speaker embeddings need Resemblyzer's weights: {_INSTALL_HINT}.")
    path = Path(locations[0]) / "pretrained.pt"
    if not path.is_file():
        raise ImportError(
            f"Resemblyzer is installed at {locations[0]} but holds no pretrained.pt; "
            f"reinstall it: {_INSTALL_HINT}."
        )
    return path


@functools.lru_cache(maxsize=1)
def _mel_basis() -> Tensor:
    """(201, 40) librosa-equivalent mel filterbank (Slaney scale and area normalisation)."""
    return mel_filterbank(N_FFT // 2 + 1, N_MELS, SAMPLE_RATE, mel_scale="slaney", norm="slaney")


def speaker_mel(wave: Tensor) -> Tensor:
    """Resemblyzer's mel power spectrogram (``librosa.feature.melspectrogram`` defaults).

    Shape:
        wave: (N,) float, 16 kHz
        output: (N // 160 + 1, 40) float32
    """
    spec = torch.stft(
        wave.float(),
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        window=torch.hann_window(N_FFT, periodic=True),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (201, F)
    power = spec.real.square() + spec.imag.square()
    return power.transpose(0, 1) @ _mel_basis()  # (F, 40)


def partial_starts(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[int]:
    """First mel frame of each 160-frame partial window (Resemblyzer's partial slices).

    Partials start every ``round(16000 / rate / 160)`` frames; the last one is dropped when
    less than ``min_coverage`` of it holds signal, unless it is the only one.
    """
    n_frames = math.ceil((n_samples + 1) / HOP_LENGTH)
    step = round(SAMPLE_RATE / rate / HOP_LENGTH)
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(
            f"partial rate must give a step of 1..{PARTIAL_FRAMES} frames; got rate={rate}."
        )
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP_LENGTH) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


def normalize_volume(wave: Tensor, target_dbfs: float = TARGET_DBFS) -> Tensor:
    """Raise (never lower) the RMS level to ``target_dbfs`` (Resemblyzer's ``increase_only``).

    Shape:
        wave: (N,)
        output: (N,)
    """
    rms = wave.double().square().mean().sqrt()
    if not rms > 0:
        return wave
    gain_db = target_dbfs - 20.0 * math.log10(float(rms))
    # Resemblyzer computes the level on int16-scaled samples; the ratio is the same
    return wave if gain_db < 0 else wave * 10.0 ** (gain_db / 20.0)


class SpeakerEncoder(nn.Module):
    """GE2E speaker encoder: mel partials in, L2-normalised 256-d embeddings out.

    Build the pretrained one with :meth:`pretrained` (or the cached :func:`load_speaker_encoder`).
    """

    def __init__(
        self, n_mels: int = N_MELS, hidden_dim: int = 256, num_layers: int = 3, dim: int = 256
    ) -> None:
        super().__init__()
        # one module per layer (the same maths as one multi-layer LSTM without dropout), so
        # that :meth:`frame_states` can read every layer's states
        self.lstm = nn.ModuleList(
            nn.LSTM(n_mels if i == 0 else hidden_dim, hidden_dim, 1, batch_first=True)
            for i in range(num_layers)
        )
        self.linear = nn.Linear(hidden_dim, dim)
        self.dim = dim

    @classmethod
    def pretrained(cls) -> SpeakerEncoder:
        """The encoder with Resemblyzer 0.1.4's weights, in eval mode."""
        checkpoint = torch.load(resemblyzer_weights_path(), map_location="cpu", weights_only=True)
        state = checkpoint["model_state"]
        model = cls()
        # the checkpoint also holds the GE2E loss's similarity scale and bias: not needed;
        # its 3-layer LSTM's "lstm.weight_ih_l1" is our "lstm.1.weight_ih_l0"
        renamed: dict[str, Tensor] = {}
        for key, value in state.items():
            if key.startswith("similarity"):
                continue
            if key.startswith("lstm."):
                name, layer = key[len("lstm.") :].rsplit("_l", 1)
                key = f"lstm.{layer}.{name}_l0"
            renamed[key] = value
        model.load_state_dict(renamed)
        return model.eval()

    def forward(self, mels: Tensor) -> Tensor:
        """Embeddings of equal-length mel windows.

        Shape:
            mels: (B, L, n_mels) mel power frames (L = 160 for the pretrained model)
            output: (B, dim), non-negative, unit L2 norm
        """
        x = mels
        for layer in self.lstm:
            x, (hidden, _) = layer(x)  # hidden: (1, B, hidden_dim)
        raw = torch.relu(self.linear(hidden[-1]))  # (B, dim)
        return F.normalize(raw, dim=-1)

    def frame_states(self, mels: Tensor, layers: Sequence[int]) -> Tensor:
        """The LSTM's hidden state at every frame, of each layer in ``layers``, concatenated.

        The LSTM runs forward in time, so trailing padding never changes the states of the
        frames before it: a padded batch gives each clip its own states.

        Shape:
            mels: (B, F, n_mels) mel power frames
            output: (B, F, hidden_dim * len(layers)), layers in increasing order
        """
        wanted = sorted(set(layers))
        if not wanted or wanted[0] < 0 or wanted[-1] >= len(self.lstm):
            raise ValueError(
                f"GE2E layers must be indices 0..{len(self.lstm) - 1}; got {list(layers)}."
            )
        states: list[Tensor] = []
        x = mels
        for i, layer in enumerate(self.lstm[: wanted[-1] + 1]):
            x, _ = layer(x)
            if i in wanted:
                states.append(x)
        return torch.cat(states, dim=-1)

    @torch.no_grad()
    def embed_segments(
        self,
        wave: Tensor,
        segments: list[tuple[int, int]],
        rate: float = 1.3,
        min_coverage: float = 0.75,
    ) -> Tensor:
        """One embedding per segment of a 16 kHz signal, all partials in one batch.

        Each segment's samples are raised to -30 dBFS (when quieter), cut into partial
        windows, embedded, averaged and L2-normalised, as Resemblyzer's ``embed_utterance``.

        Args:
            wave: the 16 kHz signal.
            segments: ``(start, end)`` sample indices, ``end > start``.
            rate, min_coverage: the partial windows (see :func:`partial_starts`).

        Shape:
            wave: (N,)
            output: (len(segments), dim) float32
        """
        windows: list[Tensor] = []
        owner: list[int] = []
        for index, (start, end) in enumerate(segments):
            piece = normalize_volume(wave[start:end].float())
            starts = partial_starts(piece.shape[0], rate, min_coverage)
            needed = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
            if needed >= piece.shape[0]:
                piece = F.pad(piece, (0, needed - piece.shape[0]))
            mel = speaker_mel(piece)  # (F, 40)
            windows.extend(mel[s : s + PARTIAL_FRAMES] for s in starts)
            owner.extend([index] * len(starts))
        if not windows:
            return torch.zeros(0, self.dim)
        partial = self(torch.stack(windows))  # (P, dim)
        owners = torch.tensor(owner)
        total = torch.zeros(len(segments), self.dim).index_add_(0, owners, partial)
        counts = torch.bincount(owners, minlength=len(segments)).clamp_min(1)
        return F.normalize(total / counts[:, None], dim=-1)


@functools.lru_cache(maxsize=1)
def load_speaker_encoder() -> SpeakerEncoder:
    """The pretrained :class:`SpeakerEncoder`, loaded once per process."""
    return SpeakerEncoder.pretrained()
