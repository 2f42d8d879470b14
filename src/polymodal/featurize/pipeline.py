"""One media file -> face, voice and words -> per-utterance features.

:func:`featurize_file` runs every stage on one video (or audio-only) file::

    frames at ``fps`` (in chunks)  --face.FaceAnalyzer-->    FaceFrames (per frame)
    audio track at 16 kHz          --voice.VoiceAnalyzer-->  VoiceFeatures (per 10 ms frame)
    sidecar .srt/.vtt, else ASR    --words-->                utterances with word timings
    per utterance: unaligned sequences (face frames, voice frames) and word-aligned ones
    (each stream pooled inside every word's interval), plus the segment's speaker embedding

and returns a :class:`VideoFeatures`; :mod:`polymodal.featurize.shards` writes it to disk.
A stage that finds nothing (no face, no speech) is not an error: the modality is missing for
that utterance (a presence mask downstream), and the report says so.  What cannot be
featurised at all (a cut file, no audio and no subtitles, no speech) raises
:class:`FeaturizeError` naming the file, the stage and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from polymodal.config import Config, param
from polymodal.data.align import pool_intervals
from polymodal.data.decode import decode_audio_track, has_video_stream, iter_video_frames

SUBTITLE_SUFFIXES = (".srt", ".vtt")


class FeaturizeError(ValueError):
    """A file that cannot be featurised; the message names the file, the stage and the fix."""

    def __init__(self, path: Path | str, stage: str, problem: str, fix: str) -> None:
        self.path, self.stage, self.problem, self.fix = str(path), stage, problem, fix
        super().__init__(f"{path}: {stage}: {problem}. {fix}")


@dataclass(frozen=True, kw_only=True)
class FeaturizeConfig(Config):
    """What ``polymodal featurize`` extracts, and how.

    Args:
        fps: face frames per second.
        detector: face detector, ``"mediapipe"`` or ``"haar"`` (see
            :mod:`polymodal.featurize.face`).
        face: run the face stage (``False``: voice and words only).
        embed_faces: add the EfficientNet-Lite0 embedding of each face crop (1280-d) to the
            expression geometry (``False``: geometry only, much faster).
        asr: how words are found when no subtitle file is given: ``"lm"`` (pocketsphinx's
            general English language model), ``"grammar"`` (the JSGF grammar ``grammar``) or
            ``"none"`` (utterances are the speech segments, without words).
        grammar: a JSGF grammar file for ``asr: grammar``.
        sample_rate: audio rate of every voice and word stage (Hz).
        n_mels: log-mel bands per 10 ms voice frame.
        chunk: face frames decoded and analysed at a time (bounds memory on long videos).
    """

    fps: float = param(5.0, gt=0)
    detector: Literal["mediapipe", "haar"] = "mediapipe"
    face: bool = True
    embed_faces: bool = True
    asr: Literal["lm", "grammar", "none"] = "lm"
    grammar: str | None = None
    sample_rate: int = param(16000, ge=8000)
    n_mels: int = param(40, ge=8)
    chunk: int = param(64, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.asr == "grammar" and self.grammar is None:
            raise ValueError(
                "asr: grammar needs 'grammar': 'grid', a JSGF file, or JSGF text (--grammar)."
            )


@dataclass
class Utterance:
    """One utterance's features, ready to be written as a manifest row.

    Attributes:
        index: position in the video.
        start, end: seconds.
        text: the transcript ('' when no words were found).
        words: (start, end, word) triples.
        arrays: modality name -> array; a modality with nothing in this utterance is absent
            (``face`` (F, D) and ``voice`` (T, D) unaligned; ``face_words`` and
            ``voice_words`` (W, D) pooled per word; ``speaker`` (256,)).
    """

    index: int
    start: float
    end: float
    text: str
    words: list[tuple[float, float, str]]
    arrays: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class VideoFeatures:
    """Everything :func:`featurize_file` found in one file.

    Attributes:
        path: the file.
        duration: seconds of audio (or of video frames when there is no audio).
        utterances: the per-utterance features.
        words_from: ``"subtitles"``, ``"asr"`` or ``"none"``.
        notes: what was missing (``"no face in 40 of 75 frames"``), for the report.
        seconds: wall time per stage.
        face: the per-frame face features (``None`` without a face stage or a video stream).
        voice: the per-frame voice features (``None`` without an audio track).
    """

    path: Path
    duration: float
    utterances: list[Utterance]
    words_from: str
    notes: list[str]
    seconds: dict[str, float]
    face: Any = None
    voice: Any = None


class Featurizer:
    """The stages of one process, built once and reused file after file.

    Models load on first use (MediaPipe, EfficientNet-Lite0, silero-vad, pocketsphinx,
    the GE2E speaker encoder), so a worker pays for each once.
    """

    def __init__(self, config: FeaturizeConfig | None = None) -> None:
        self.config = config if config is not None else FeaturizeConfig()
        self._face: Any = None
        self._voice: Any = None
        self._asr: Any = None

    def face(self) -> Any:
        if self._face is None:
            from polymodal.featurize.face import FaceAnalyzer

            self._face = FaceAnalyzer(detector=self.config.detector, embed=self.config.embed_faces)
        return self._face

    def voice(self) -> Any:
        if self._voice is None:
            from polymodal.featurize.voice import VoiceAnalyzer

            self._voice = VoiceAnalyzer(n_mels=self.config.n_mels)
        return self._voice

    def asr(self) -> Any:
        if self._asr is None:
            from polymodal.featurize.words import SpeechRecognizer

            grammar = self.config.grammar if self.config.asr == "grammar" else None
            self._asr = SpeechRecognizer(grammar=grammar)
        return self._asr

    def __call__(self, path: str | Path, subtitles: str | Path | None = None) -> VideoFeatures:
        return featurize_file(path, self, subtitles)


def sidecar_subtitles(path: Path) -> Path | None:
    """``video.srt`` or ``video.vtt`` next to ``video.mp4``, when there is one."""
    for suffix in SUBTITLE_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _timed(seconds: dict[str, float], stage: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def _stage(path: Path, stage: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; any error becomes a :class:`FeaturizeError` naming ``stage``."""
    try:
        return fn()
    except FeaturizeError:
        raise
    except (ValueError, OSError, RuntimeError) as e:
        raise FeaturizeError(path, stage, str(e).rstrip("."), "see the cause above") from e


def featurize_file(
    path: str | Path, featurizer: Featurizer, subtitles: str | Path | None = None
) -> VideoFeatures:
    """Run every stage on one file; see the module docstring.

    Args:
        path: a video (any container PyAV reads) or an audio file.
        featurizer: the stages (reused across files).
        subtitles: a ``.srt``/``.vtt`` file; ``None`` looks for one next to ``path``, then
            falls back to speech recognition.

    Raises:
        FeaturizeError: the file cannot be featurised (see the module docstring).
    """
    p = Path(path)
    cfg = featurizer.config
    seconds: dict[str, float] = {}
    notes: list[str] = []
    if not p.is_file():
        raise FeaturizeError(p, "open", "the file does not exist", "check the path")
    video = _stage(p, "decode", lambda: has_video_stream(p))
    wave = _timed(
        seconds,
        "decode_audio",
        lambda: _stage(p, "decode", lambda: decode_audio_track(p, cfg.sample_rate)),
    )
    face = None
    if video and cfg.face:
        face = _timed(seconds, "face", lambda: _stage(p, "face", lambda: _faces(p, featurizer)))
        missing = int((~face.present).sum())
        if missing:
            notes.append(f"no face in {missing} of {len(face.present)} frames")
    voice = None
    if wave is None:
        notes.append("no audio track")
    else:
        voice = _timed(
            seconds,
            "voice",
            lambda: _stage(p, "voice", lambda: featurizer.voice()(wave, cfg.sample_rate)),
        )
    sub = Path(subtitles) if subtitles is not None else sidecar_subtitles(p)
    utterances, words_from = _timed(
        seconds,
        "words",
        lambda: _stage(p, "words", lambda: _utterances(p, sub, wave, voice, featurizer)),
    )
    if not utterances:
        problem = "no audio track and no subtitles" if wave is None else "no speech was found"
        raise FeaturizeError(
            p,
            "words",
            problem,
            "give a subtitle file (--transcript or video.srt next to the video) or check the audio",
        )
    duration = len(wave) / cfg.sample_rate if wave is not None else _face_duration(face)
    out = [_utterance_arrays(i, u, face, voice) for i, u in enumerate(utterances)]
    return VideoFeatures(p, duration, out, words_from, notes, seconds, face, voice)


def _faces(p: Path, featurizer: Featurizer) -> Any:
    """The face stage over the whole video, ``chunk`` frames at a time."""
    from polymodal.featurize.face import concat_face_frames

    cfg = featurizer.config
    analyzer = featurizer.face()
    parts = [
        analyzer(frames, times, reset=(i == 0))
        for i, (frames, times) in enumerate(iter_video_frames(p, cfg.fps, chunk=cfg.chunk))
    ]
    return concat_face_frames(parts)


def _face_duration(face: Any) -> float:
    if face is None or len(face.times) == 0:
        return 0.0
    return (
        float(face.times[-1]) + float(face.times[1] - face.times[0]) if len(face.times) > 1 else 0.0
    )


def _utterances(
    p: Path, sub: Path | None, wave: Tensor | None, voice: Any, featurizer: Featurizer
) -> tuple[list[Any], str]:
    from polymodal.featurize.words import Utterance as Cue
    from polymodal.featurize.words import read_subtitles, utterances_from_words

    if sub is not None:
        return read_subtitles(sub), "subtitles"
    if wave is None or voice is None or not voice.segments:
        return [], "none"
    cfg = featurizer.config
    if cfg.asr == "none":
        return [Cue(s, e, "", []) for s, e in voice.segments], "none"
    words = []
    for start, end in voice.segments:  # recognise segment by segment: bounded memory
        a, b = int(start * cfg.sample_rate), int(end * cfg.sample_rate)
        words += featurizer.asr()(wave[a:b], cfg.sample_rate, offset=start)
    return utterances_from_words(words, voice.segments), "asr"


def _voice_frames(voice: Any) -> Tensor:
    """Per 10 ms frame: [log2 f0 (0 unvoiced), voicing, energy dB / 10, log-mel]: (T, 3 + n_mels)."""
    f0 = voice.pitch_hz.float()
    log_f0 = torch.where(f0 > 0, torch.log2(f0.clamp_min(1.0) / 100.0), torch.zeros_like(f0))
    return torch.cat(
        [
            log_f0[:, None],
            voice.voicing.float()[:, None],
            voice.energy_db.float()[:, None] / 10.0,
            voice.logmel.float(),
        ],
        dim=1,
    )


def _face_frames(face: Any) -> Tensor:
    """Per frame: [embedding, geometry]: (F, 1280 + G) (or (F, G) without embeddings)."""
    parts = (
        [face.embedding.float(), face.geometry.float()]
        if face.embedding.numel()
        else [face.geometry.float()]
    )
    return torch.cat(parts, dim=1)


def _window(times: Tensor, start: float, end: float) -> Tensor:
    """Indices of the frames with ``start <= t < end``."""
    return ((times >= start) & (times < end)).nonzero().flatten()


def _utterance_arrays(index: int, u: Any, face: Any, voice: Any) -> Utterance:
    words = [(float(w.start), float(w.end), str(w.text)) for w in u.words]
    out = Utterance(index, float(u.start), float(u.end), str(u.text), words)
    intervals = [(a, b) for a, b, _ in words]
    if face is not None:
        keep = _window(face.times, out.start, out.end)
        keep = keep[face.present[keep]]  # only frames where the speaker's face was found
        if len(keep):
            values, times = _face_frames(face)[keep], face.times[keep]
            out.arrays["face"] = values
            if intervals:
                out.arrays["face_words"] = pool_intervals(values, times, intervals)
    if voice is not None:
        keep = _window(voice.frame_times, out.start, out.end)
        if len(keep):
            values, times = _voice_frames(voice)[keep], voice.frame_times[keep]
            out.arrays["voice"] = values
            if intervals:
                out.arrays["voice_words"] = pool_intervals(values, times, intervals)
        speaker = _segment_speaker(voice, out.start, out.end)
        if speaker is not None:
            out.arrays["speaker"] = speaker
    return out


def _segment_speaker(voice: Any, start: float, end: float) -> Tensor | None:
    """The speaker embedding of the speech segment overlapping [start, end) the most."""
    best, overlap = None, 0.0
    for i, (a, b) in enumerate(voice.segments):
        o = min(b, end) - max(a, start)
        if o > overlap and i < len(voice.speaker):
            best, overlap = i, o
    return None if best is None else voice.speaker[best].float()


__all__ = [
    "FeaturizeConfig",
    "FeaturizeError",
    "Featurizer",
    "Utterance",
    "VideoFeatures",
    "featurize_file",
    "sidecar_subtitles",
]
