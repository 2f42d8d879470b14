"""``polymodal sentiment VIDEO``: a sentiment timeline from face, voice and words.

Every utterance of a video (subtitle cues, or speech segments with recognised words; see
:mod:`polymodal.featurize`) gets a score in [-1, 1] from each modality, and a fused score:

* **words**: a transcript model trained on CMU-MOSI (``configs/mosi_transcript.yaml``:
  frozen MiniLM + MLP, 78.5 % test accuracy on MOSI); score ``2 P(positive) - 1``;
  confidence ``|score|``.
* **voice**: a voice-emotion model trained on RAVDESS (``configs/ravdess_speech.yaml``) on
  the utterance's audio; its 8 emotions are mapped to valence (:data:`VALENCE`, after
  Russell's circumplex of affect: happy +1, calm +0.3, surprised +0.2, neutral 0, fearful
  -0.7, sad -0.8, disgust -0.8, angry -0.9); score = the expected valence; confidence = the
  top emotion's probability.
* **face**: cues, not a trained model: the speaker's smile relative to their own median over
  the video (in median absolute deviations), squashed by ``tanh``; confidence = the share
  of the utterance's frames with a face times ``|score|``.

The fused score is an attention-weighted mean over the modalities present: weights
``softmax(TEMPERATURE * confidence)``, shown as each modality's contribution.  This default
fusion is a fixed rule, not a model trained on labelled videos (no offline data set has
sentiment labels with raw face, voice and words); with labelled videos, train a fusion on
``polymodal featurize`` shards and pass it with ``--model RUN`` (see the README).

The default models train on first use from the built-in data (about a minute for the text
model, a few for the voice model on 2 CPU cores) into ``cache_dir()/models`` and are reused
afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.data.collate import collate
from polymodal.data.paths import cache_dir
from polymodal.data.sample import Sample

logger = logging.getLogger("polymodal.sentiment")

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TEXT_CONFIG = "mosi_transcript.yaml"
VOICE_CONFIG = "ravdess_speech.yaml"
#: Valence of each RAVDESS emotion (Russell 1980's circumplex of affect, rounded).
VALENCE: dict[str, float] = {
    "neutral": 0.0,
    "calm": 0.3,
    "happy": 1.0,
    "sad": -0.8,
    "angry": -0.9,
    "fearful": -0.7,
    "disgust": -0.8,
    "surprised": 0.2,
}
#: Sharpness of the attention over modality confidences.
TEMPERATURE = 4.0
#: |fused score| below this is labelled neutral.
NEUTRAL_BAND = 0.1


@dataclass
class ModalityScore:
    """One modality's reading of one utterance."""

    score: float
    confidence: float
    weight: float = 0.0


@dataclass
class UtteranceSentiment:
    """One row of the timeline."""

    start: float
    end: float
    text: str
    score: float
    label: str
    modalities: dict[str, ModalityScore] = field(default_factory=dict)
    voice_emotion: str | None = None
    voice_probabilities: dict[str, float] = field(default_factory=dict)
    face: dict[str, float] = field(default_factory=dict)


@dataclass
class SentimentModels:
    """The trained models behind the default reading (any may be ``None``)."""

    text: Any = None
    voice: Any = None


def _config_path(name: str) -> Path:
    path = REPO_CONFIGS / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the default sentiment models train from the repository's "
            f"configs/{name}. Pass your own runs with --text-model / --voice-model."
        )
    return path


def cached_run(config_name: str, root: Path | None = None) -> Path:
    """The run folder of ``configs/<config_name>``, trained into the cache on first use."""
    from polymodal.training import load_config, train

    text = _config_path(config_name).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = (root or cache_dir() / "models") / f"{Path(config_name).stem}-{digest}"
    if (folder / "results.json").is_file():
        return folder
    logger.info("training %s once (cached in %s)", config_name, folder)
    cfg = load_config(_config_path(config_name), [f"output_dir={folder}", "progress=false"])
    train(cfg, overwrite=True)  # a folder without results.json holds an unfinished try
    return folder


def load_models(
    text_model: str | Path | None = None, voice_model: str | Path | None = None
) -> SentimentModels:
    """Rebuild the text and voice models from run folders (default: the cached ones)."""
    from polymodal.inference import load_trained

    text = load_trained(text_model or cached_run(TEXT_CONFIG))
    voice = load_trained(voice_model or cached_run(VOICE_CONFIG))
    return SentimentModels(text=text, voice=voice)


# --------------------------------------------------------------------------- scoring


@torch.no_grad()
def _class_probabilities(trained: Any, modality: str, values: Sequence[Any]) -> Tensor:
    """(N, K) softmax probabilities of ``trained`` on N single-modality examples."""
    from polymodal.inference import calibrate_groups

    schema = trained.schema.select([modality])
    samples = [Sample(str(i), {modality: v}, None) for i, v in enumerate(values)]
    batch = collate(samples, schema)
    # a video is one speaker: encoders that standardise by speaker use all its utterances
    calibrate_groups(trained.model, [(batch, ["video"] * len(samples))])
    return torch.softmax(trained.model(batch).logits.float(), dim=-1)


def text_scores(trained: Any, texts: Sequence[str]) -> list[ModalityScore | None]:
    """The MOSI transcript model's reading of each text (``None`` for an empty one)."""
    keep = [i for i, t in enumerate(texts) if t.strip()]
    out: list[ModalityScore | None] = [None] * len(texts)
    if not keep or trained is None:
        return out
    probs = _class_probabilities(trained, "transcript", [texts[i] for i in keep])  # (N, 2)
    names = list(trained.schema.target.class_names or ("negative", "positive"))
    pos = names.index("positive") if "positive" in names else 1
    for i, p in zip(keep, probs[:, pos].tolist(), strict=True):
        score = 2.0 * p - 1.0
        out[i] = ModalityScore(score, abs(score))
    return out


def voice_scores(
    trained: Any, waves: Sequence[Tensor | None]
) -> list[tuple[ModalityScore, str, dict[str, float]] | None]:
    """The voice-emotion model's reading of each utterance's audio."""
    keep = [i for i, w in enumerate(waves) if w is not None and len(w) > 1600]
    out: list[tuple[ModalityScore, str, dict[str, float]] | None] = [None] * len(waves)
    if not keep or trained is None:
        return out
    names = list(trained.schema.target.class_names)
    values = [waves[i] for i in keep]
    probs = _class_probabilities(trained, trained.schema.names[0], values)  # (N, 8)
    valence = torch.tensor([VALENCE.get(n, 0.0) for n in names])
    for i, p in zip(keep, probs, strict=True):
        top = int(p.argmax())
        score = float((p * valence).sum())
        out[i] = (
            ModalityScore(score, float(p[top])),
            names[top],
            {n: round(float(q), 4) for n, q in zip(names, p, strict=True)},
        )
    return out


def face_scores(
    face: Any, spans: Sequence[tuple[float, float]]
) -> list[tuple[ModalityScore, dict[str, float]] | None]:
    """Face cues per utterance: the mean geometry and a smile-based valence cue."""
    from polymodal.featurize.face import GEOMETRY

    out: list[tuple[ModalityScore, dict[str, float]] | None] = [None] * len(spans)
    if face is None or not bool(face.present.any()):
        return out
    geometry = face.geometry.float()
    smile_all = geometry[face.present, GEOMETRY.index("smile")]
    median = float(smile_all.median())
    mad = float((smile_all - median).abs().median()) or 1e-3
    for i, (start, end) in enumerate(spans):
        inside = (face.times >= start) & (face.times < end)
        present = inside & face.present
        if not bool(present.any()):
            continue
        cues = geometry[present].mean(0)
        z = (float(cues[GEOMETRY.index("smile")]) - median) / (1.4826 * mad)
        score = math.tanh(z / 2.0)
        share = float(present.sum()) / max(1, int(inside.sum()))
        out[i] = (
            ModalityScore(score, share * abs(score)),
            {n: round(float(v), 4) for n, v in zip(GEOMETRY, cues, strict=True)},
        )
    return out


def fuse(scores: dict[str, ModalityScore]) -> float:
    """Attention over the present modalities' confidences; sets each ``weight``."""
    if not scores:
        return 0.0
    conf = torch.tensor([s.confidence for s in scores.values()])
    weights = torch.softmax(TEMPERATURE * conf, dim=0)
    for s, w in zip(scores.values(), weights.tolist(), strict=True):
        s.weight = w
    return float(sum(s.score * s.weight for s in scores.values()))


def label_of(score: float) -> str:
    if score > NEUTRAL_BAND:
        return "positive"
    if score < -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def analyse(
    video: str | Path,
    models: SentimentModels,
    featurizer: Any = None,
    transcript: str | Path | None = None,
) -> list[UtteranceSentiment]:
    """Featurise ``video`` and read every utterance with the default models."""
    from polymodal.featurize.pipeline import FeaturizeConfig, Featurizer

    featurizer = featurizer or Featurizer(FeaturizeConfig(embed_faces=False))
    features = featurizer(video, transcript)
    utts = features.utterances
    spans = [(u.start, u.end) for u in utts]
    rate = featurizer.config.sample_rate
    wave = _audio(video, rate) if features.voice is not None else None
    waves = [None if wave is None else wave[int(a * rate) : int(b * rate)] for a, b in spans]
    texts = text_scores(models.text, [u.text for u in utts])
    voices = voice_scores(models.voice, waves)
    faces = face_scores(features.face, spans)
    rows = []
    for u, t, v, f in zip(utts, texts, voices, faces, strict=True):
        scores: dict[str, ModalityScore] = {}
        if t is not None:
            scores["words"] = t
        if v is not None:
            scores["voice"] = v[0]
        if f is not None:
            scores["face"] = f[0]
        fused = fuse(scores)
        rows.append(
            UtteranceSentiment(
                start=u.start,
                end=u.end,
                text=u.text,
                score=fused,
                label=label_of(fused),
                modalities=scores,
                voice_emotion=v[1] if v is not None else None,
                voice_probabilities=v[2] if v is not None else {},
                face=f[1] if f is not None else {},
            )
        )
    return rows


def _audio(video: str | Path, rate: int) -> Tensor | None:
    from polymodal.data.decode import decode_audio_track

    return decode_audio_track(video, rate)


# --------------------------------------------------------------------------- output


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (valid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(rows: Sequence[UtteranceSentiment], video: str | Path) -> str:
    """The timeline as JSON; a reading a modality could not give is ``null``."""
    doc = {"video": str(video), "utterances": [asdict(r) for r in rows]}
    return json.dumps(_finite(doc), indent=1, allow_nan=False)


def format_table(rows: Sequence[UtteranceSentiment]) -> str:
    """One line per utterance: time, label, fused and per-modality scores, text."""
    head = f"{'start':>6} {'end':>6}  {'label':<8} {'score':>6}  {'words':>6} {'voice':>6} {'face':>6}  text"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [
            f"{r.modalities[m].score:>+6.2f}" if m in r.modalities else f"{'-':>6}"
            for m in ("words", "voice", "face")
        ]
        emotion = f" [{r.voice_emotion}]" if r.voice_emotion else ""
        lines.append(
            f"{r.start:>6.2f} {r.end:>6.2f}  {r.label:<8} {r.score:>+6.2f}  {' '.join(cells)}  "
            f"{r.text[:60]}{emotion}"
        )
    return "\n".join(lines)


def plot_timeline(rows: Sequence[UtteranceSentiment], path: str | Path, title: str = "") -> Path:
    """Sentiment per utterance over time: the fused score and one line per modality (PNG)."""
    from polymodal.plotting import pyplot, save_figure

    plt = pyplot("plot_timeline")
    fig, ax = plt.subplots(figsize=(10, 3.6))
    mids = [(r.start + r.end) / 2 for r in rows]
    for m, style in (("words", "C0o-"), ("voice", "C2s-"), ("face", "C1^-")):
        pts = [
            (x, r.modalities[m].score) for x, r in zip(mids, rows, strict=True) if m in r.modalities
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, alpha=0.6, label=m, markersize=4)
    for r in rows:
        ax.hlines(r.score, r.start, r.end, colors="black", linewidth=3)
    ax.plot([], [], "k-", linewidth=3, label="fused (utterance span)")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sentiment (-1 negative, +1 positive)")
    ax.set_title(title or "sentiment timeline")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = [
    "VALENCE",
    "ModalityScore",
    "SentimentModels",
    "UtteranceSentiment",
    "analyse",
    "cached_run",
    "format_table",
    "fuse",
    "load_models",
    "plot_timeline",
    "to_json",
]
