"""RAVDESS speech: 1,440 acted clips of two sentences, 24 actors, 8 emotions.

The speech part of the Ryerson Audio-Visual Database of Emotional Speech and Song
(Livingstone & Russo 2018, PLoS ONE 13(5); Zenodo 10.5281/zenodo.1188976), as held by
github.com/ZenvilleErasmus/RAVDESS-emotions-speech-audio-only @29dc10e
(``Audio_Speech_Actors_01-24/``).  Licence CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from polymodal.data.dataset import MultimodalDataset
from polymodal.data.datasets._common import (
    DatasetInfo,
    check_modalities,
    locate,
    register_dataset,
)
from polymodal.data.decode import decode_audio
from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.paths import candidate_roots
from polymodal.data.sample import Sample

INFO = DatasetInfo(
    name="ravdess_speech",
    description="RAVDESS acted speech: 1,440 clips, 24 actors, 8 emotions (16 kHz mono)",
    licence="CC BY-NC-SA 4.0",
    upstream="github.com/ZenvilleErasmus/RAVDESS-emotions-speech-audio-only@29dc10e "
    "(RAVDESS, Zenodo 10.5281/zenodo.1188976)",
    splits=("train", "test", "all"),
    subdir="ravdess_speech",
    marker="Actor_24/03-01-08-02-02-02-24.ogg",
)

#: The 8 classes in the order of RAVDESS's emotion code (01 .. 08): class ``k`` is code k+1.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
INTENSITIES: tuple[str, ...] = ("normal", "strong")
STATEMENTS: tuple[str, ...] = ("Kids are talking by the door", "Dogs are sitting by the door")
ACTORS: tuple[int, ...] = tuple(range(1, 25))
#: Held out by default: the last four actors, two male (21, 23: odd) and two female (22, 24:
#: even), fixed before any model was trained.  ``train`` is the other 20 actors.
TEST_ACTORS: tuple[int, ...] = (21, 22, 23, 24)
SAMPLE_RATE = 16000

# 03 = audio only, 01 = speech; then emotion, intensity, statement, repetition, actor.
_CLIP = re.compile(r"^03-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(ogg|wav)$")
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
_AUDIO_EXTS = (".ogg", ".wav")
#: Marker of a user's own copy of upstream's WAV files (``locate`` looks for the ``.ogg``).
WAV_MARKER = INFO.marker[: -len(".ogg")] + ".wav"


class Clip:
    """One clip's fields, parsed from its file name (no decoding)."""

    __slots__ = ("actor", "emotion", "intensity", "path", "repetition", "statement")

    def __init__(
        self, path: Path, emotion: int, intensity: int, statement: int, repetition: int, actor: int
    ) -> None:
        self.path = path
        self.emotion = emotion  # class index 0..7
        self.intensity = intensity  # 0 normal, 1 strong
        self.statement = statement  # 1 or 2
        self.repetition = repetition  # 1 or 2
        self.actor = actor  # 1..24

    @property
    def stem(self) -> str:
        return self.path.stem


def parse_clip_name(path: str | os.PathLike[str]) -> Clip:
    """The fields of a RAVDESS speech file name ``03-01-EE-II-SS-RR-AA.{ogg,wav}``.

    Raises:
        ValueError: the name is not a RAVDESS audio-only speech name, or a code is out of
            range (emotion 01-08, intensity 01-02 and 01 for neutral, statement and
            repetition 01-02, actor 01-24); the message names the file.
    """
    p = Path(path)
    m = _CLIP.match(p.name)
    if m is None:
        raise ValueError(
            f"RAVDESS clip {p} is not named '03-01-EE-II-SS-RR-AA.ogg' (or .wav): audio-only "
            "(03) speech (01), then emotion, intensity, statement, repetition and actor "
            "codes. Remove or rename the file."
        )
    emotion, intensity, statement, repetition, actor = (int(m[i]) for i in range(1, 6))
    problems = []
    if not 1 <= emotion <= len(EMOTIONS):
        problems.append(f"emotion {emotion:02d} is not 01-08")
    if intensity not in (1, 2):
        problems.append(f"intensity {intensity:02d} is not 01 or 02")
    elif emotion == 1 and intensity == 2:
        problems.append("neutral (01) has no strong intensity (02)")
    if statement not in (1, 2):
        problems.append(f"statement {statement:02d} is not 01 or 02")
    if repetition not in (1, 2):
        problems.append(f"repetition {repetition:02d} is not 01 or 02")
    if actor not in ACTORS:
        problems.append(f"actor {actor:02d} is not 01-24")
    if problems:
        raise ValueError(
            f"RAVDESS clip {p}: " + "; ".join(problems) + ". Remove or rename the file."
        )
    return Clip(p, emotion - 1, intensity - 1, statement, repetition, actor)


def scan_clips(root: Path) -> list[Clip]:
    """Every clip under ``root/Actor_NN/``, sorted by actor then file name.

    A clip present both as ``.ogg`` and ``.wav`` is read from the ``.ogg``.

    Raises:
        FileNotFoundError: no ``Actor_NN`` folder or no clip under ``root``.
        ValueError: a badly named clip, or a clip whose actor code is not its folder's.
    """
    if not root.is_dir():
        raise FileNotFoundError(
            f"RAVDESS folder missing: {root}. Pass root= the folder holding Actor_01 .. "
            "Actor_24, or download=True."
        )
    clips: dict[str, Clip] = {}
    folders = sorted(d for d in root.iterdir() if d.is_dir() and _ACTOR_DIR.match(d.name))
    for folder in folders:
        folder_actor = int(folder.name[-2:])
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(_AUDIO_EXTS):
                continue
            clip = parse_clip_name(folder / name)
            if clip.actor != folder_actor:
                raise ValueError(
                    f"RAVDESS clip {clip.path} names actor {clip.actor:02d} but lies in "
                    f"{folder.name}; move it to Actor_{clip.actor:02d}/."
                )
            if clip.stem not in clips or clip.path.suffix == ".ogg":
                clips[clip.stem] = clip
    if not clips:
        raise FileNotFoundError(
            f"No RAVDESS clips (Actor_NN/03-01-*.ogg or .wav) under {root}. Pass root= the "
            "folder holding Actor_01 .. Actor_24, or download=True."
        )
    return sorted(clips.values(), key=lambda c: (c.actor, c.stem))


class RAVDESSSpeech(MultimodalDataset):
    """RAVDESS speech clips with their emotion.

    Schema:

    ===== ===== ======================================== ==============================
    name  kind  one example                              source
    ===== ===== ======================================== ==============================
    audio audio (T,) float32 at ``sample_rate`` (16,000   ``Actor_NN/03-01-EE-II-SS-RR-
                Hz by default), mono, 2.9-5.3 s          AA.ogg`` (or ``.wav``)
    ===== ===== ======================================== ==============================

    Target: the emotion (classification, 8 classes in the order of RAVDESS's code,
    :data:`EMOTIONS`: neutral, calm, happy, sad, angry, fearful, disgust, surprised).
    Each actor speaks each of the two sentences twice per emotion and intensity (normal
    and strong; neutral has only normal), so an actor has 60 clips: 4 neutral and 8 of
    each other emotion.  ``Sample.id`` is the file's stem (``03-01-05-02-01-02-12``);
    ``meta`` has ``actor`` (1-24), ``gender`` (``"male"`` for odd actors, ``"female"`` for
    even), ``intensity`` (``"normal"``/``"strong"``), ``statement`` (1 or 2: "Kids are
    talking by the door", "Dogs are sitting by the door"), ``repetition`` (1 or 2),
    ``emotion`` (the class name) and ``path``.  ``groups()`` is the actor
    (``"Actor_12"``).

    Split rule (actor-held-out): ``test`` = the clips of ``test_actors`` (default
    :data:`TEST_ACTORS`: 21 and 23, male, 22 and 24, female; 240 clips), ``train`` = the
    other 20 actors (1,200 clips), ``all`` = train then test (1,440).  Validation is carved
    from ``train`` by actor by the training loop (``data.val_fraction`` of the actors), so
    no actor is ever on two sides.  The usual protocols hold actors out too (e.g. 4 test,
    4 validation, 16 train, or k folds by actor); a random split of clips puts every test
    voice in training and reports much higher accuracy.

    Files: the shared copy is upstream's 48 kHz 16-bit WAV re-encoded as 16 kHz mono Opus
    in OGG (``.ogg``, ~4 s each, read by soundfile with libsndfile >= 1.0.29).  A download
    (``download=True``) fetches upstream's WAVs and stores each in that same form (decoded,
    resampled to 16 kHz with :func:`~polymodal.data.decode.resample_audio`, encoded as
    Opus); a user's own copy of RAVDESS (``Audio_Speech_Actors_01-24``, WAV) is read as
    it is.  Both are decoded with :func:`~polymodal.data.decode.decode_audio` and
    resampled to ``sample_rate``.

    Decoding costs ~15 ms a clip on one core (~20 s an epoch of 1,200 clips);
    ``cache=True`` keeps every decoded clip in memory after its first use (64 KB a second
    at 16 kHz: ~290 MB for the train split).
    """

    name = "ravdess_speech"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        sample_rate: int = SAMPLE_RATE,
        test_actors: Sequence[int] = TEST_ACTORS,
        modalities: Sequence[str] | None = None,
        cache: bool = False,
    ) -> None:
        self.modalities = check_modalities("ravdess_speech", modalities, ("audio",))
        test_set = _check_args(split, sample_rate, test_actors, cache)
        self.root = Path(root)
        self.split = split
        self.sample_rate = sample_rate
        self.test_actors = tuple(sorted(test_set))
        self.cache = cache
        self.schema = Schema(
            (
                ModalitySpec(
                    "audio",
                    ModalityKind.AUDIO,
                    shape=(),
                    sample_rate=float(sample_rate),
                    description="acted emotional speech (RAVDESS), mono",
                ),
            ),
            TargetSpec("classification", len(EMOTIONS), EMOTIONS, name="emotion"),
        ).select(list(self.modalities))
        clips = scan_clips(self.root)
        present = {c.actor for c in clips}
        absent = sorted(test_set - present)
        if absent:
            raise ValueError(
                f"The 'test_actors' parameter of ravdess_speech names actors {absent}, who "
                f"have no clips under {self.root}; actors there: {sorted(present)}."
            )
        sides = {
            "train": [c for c in clips if c.actor not in test_set],
            "test": [c for c in clips if c.actor in test_set],
        }
        self._clips = sides["train"] + sides["test"] if split == "all" else sides[split]
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._clips)

    def __getitem__(self, index: int) -> Sample:
        n = len(self._clips)
        if not -n <= index < n:
            raise IndexError(f"ravdess_speech[{index}]: index out of range for {n} examples")
        index %= n
        clip = self._clips[index]
        values: dict[str, Any] = {}
        if "audio" in self.modalities:
            values["audio"] = self._audio(index, clip)
        return Sample(
            id=clip.stem,
            modalities=values,
            target=clip.emotion,
            meta={
                "actor": clip.actor,
                "gender": "male" if clip.actor % 2 else "female",
                "intensity": INTENSITIES[clip.intensity],
                "statement": clip.statement,
                "repetition": clip.repetition,
                "emotion": EMOTIONS[clip.emotion],
                "path": str(clip.path),
            },
        )

    def _audio(self, index: int, clip: Clip) -> torch.Tensor:
        wave = self._cache.get(index)
        if wave is None:
            wave = decode_audio(
                clip.path, sample_rate=self.sample_rate, where=f"ravdess_speech[{index}]"
            )
            if self.cache:
                self._cache[index] = wave
        return wave

    def targets(self) -> list[Any]:
        return [c.emotion for c in self._clips]

    def groups(self) -> list[str]:
        return [f"Actor_{c.actor:02d}" for c in self._clips]

    def ids(self) -> list[str]:
        return [c.stem for c in self._clips]

    def clips(self) -> list[Clip]:
        """The parsed file name of every example, in order (no decoding)."""
        return list(self._clips)


def _check_args(split: str, sample_rate: int, test_actors: Sequence[int], cache: bool) -> set[int]:
    if split not in INFO.splits:
        raise ValueError(
            f"The 'split' parameter of ravdess_speech must be one of {list(INFO.splits)}; "
            f"got {split!r}."
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(
            f"The 'sample_rate' parameter of ravdess_speech must be a positive int (Hz); got "
            f"{sample_rate!r}. The shared copy is stored at 16000 Hz."
        )
    if not isinstance(cache, bool):
        raise TypeError(f"The 'cache' parameter of ravdess_speech must be a bool; got {cache!r}.")
    if isinstance(test_actors, str | int):
        raise TypeError(
            f"The 'test_actors' parameter of ravdess_speech must be a sequence of actor "
            f"numbers 1-24, e.g. [21, 22, 23, 24]; got {test_actors!r}."
        )
    bad = [a for a in test_actors if isinstance(a, bool) or a not in ACTORS]
    if bad:
        raise ValueError(
            f"The 'test_actors' parameter of ravdess_speech must hold actor numbers 1-24 "
            f"(ints); got {list(test_actors)}."
        )
    test_set = {int(a) for a in test_actors}
    if not test_set or len(test_set) >= len(ACTORS):
        raise ValueError(
            f"The 'test_actors' parameter of ravdess_speech must hold out 1 to "
            f"{len(ACTORS) - 1} of the 24 actors; got {list(test_actors)}."
        )
    return test_set


def _locate(root: str | os.PathLike[str] | None, download: bool) -> Path:
    """The shared copy's folder (``.ogg``), or a user's own copy of upstream's WAVs."""
    for cand in candidate_roots(INFO.subdir, root):
        if (cand / INFO.marker).exists() or (cand / WAV_MARKER).exists():
            return cand
    return locate(INFO, root, download)


def reencode_upstream_wav(rel: str, data: bytes) -> bytes:
    """Upstream's 48 kHz WAV bytes as the shared copy stores them: 16 kHz mono Opus in OGG.

    The download's transform (see :mod:`polymodal.data.download`): decoded with
    soundfile, mixed to mono, resampled with
    :func:`~polymodal.data.decode.resample_audio` and encoded with libsndfile's Opus
    encoder.  Bytes that are not a WAV file are returned unchanged.
    """
    if not rel.endswith(".ogg") or data[:4] != b"RIFF":
        return data
    import soundfile as sf

    from polymodal.data.decode import resample_audio

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ValueError(
            f"RAVDESS download {rel}: upstream's file is not a readable WAV ({e}); delete it "
            "and download again."
        ) from e
    wave = resample_audio(torch.from_numpy(samples.mean(1)), int(rate), SAMPLE_RATE)
    out = io.BytesIO()
    sf.write(out, wave.numpy(), SAMPLE_RATE, format="OGG", subtype="OPUS")
    return out.getvalue()


@register_dataset(INFO)
def ravdess_speech(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    sample_rate: int = SAMPLE_RATE,
    test_actors: Sequence[int] = TEST_ACTORS,
    modalities: Sequence[str] | None = None,
    cache: bool = False,
) -> RAVDESSSpeech:
    """RAVDESS speech, actor-held-out (see :class:`RAVDESSSpeech`).

    ``root`` is the folder holding ``Actor_01 .. Actor_24`` (or its parent); without it,
    ``$POLYMODAL_DATA/ravdess_speech`` then the user cache are searched.
    ``download=True`` fetches upstream's WAVs and re-encodes them (see the class).
    """
    _check_args(split, sample_rate, test_actors, cache)
    return RAVDESSSpeech(
        _locate(root, download),
        split=split,
        sample_rate=sample_rate,
        test_actors=test_actors,
        modalities=modalities,
        cache=cache,
    )
