"""The built-in ``ravdess_speech`` data set on the shared real files (no decoding unless said)."""

from __future__ import annotations

import io
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from polymodal.data.datasets import DATASETS, load_dataset
from polymodal.data.datasets._common import INFOS
from polymodal.data.datasets.ravdess_speech import (
    EMOTIONS,
    TEST_ACTORS,
    RAVDESSSpeech,
    parse_clip_name,
    reencode_upstream_wav,
)
from polymodal.data.decode import DecodeError, decode_audio
from polymodal.data.download import SOURCES, Source, _fetch_one

MARKER = "Actor_24/03-01-08-02-02-02-24.ogg"


def _load(**options: Any) -> RAVDESSSpeech:
    ds = load_dataset("ravdess_speech", **options)
    assert isinstance(ds, RAVDESSSpeech)
    return ds


def _wave(ds: RAVDESSSpeech, index: int) -> torch.Tensor:
    wave = ds[index].modalities["audio"]
    assert isinstance(wave, torch.Tensor)
    return wave


@pytest.fixture(scope="module")
def full(data_root: Path) -> RAVDESSSpeech:
    return _load(split="all")


def test_registered_with_its_info() -> None:
    assert "ravdess_speech" in DATASETS
    info = INFOS["ravdess_speech"]
    assert info.splits == ("train", "test", "all")
    assert info.marker == MARKER and "CC BY-NC-SA" in info.licence


def test_counts_per_split_and_class(full: RAVDESSSpeech) -> None:
    train = load_dataset("ravdess_speech", split="train")
    test = load_dataset("ravdess_speech", split="test")
    assert (len(train), len(test), len(full)) == (1200, 240, 1440)
    # Per actor: 4 neutral (no strong intensity) and 8 of each other emotion.
    for ds, actors in ((train, 20), (test, 4), (full, 24)):
        counts = ds.class_counts()
        assert list(counts) == list(EMOTIONS)
        assert counts["neutral"] == 4 * actors
        assert all(counts[e] == 8 * actors for e in EMOTIONS[1:])
    assert Counter(full.groups()) == {f"Actor_{a:02d}": 60 for a in range(1, 25)}
    assert full.schema.target.class_names == EMOTIONS
    assert full.schema["audio"].sample_rate == 16000.0


def test_labels_and_meta_parsed_from_file_names(full: RAVDESSSpeech) -> None:
    ids = full.ids()
    assert len(set(ids)) == 1440
    for clip, target, stem in zip(full.clips(), full.targets(), ids, strict=True):
        codes = [int(x) for x in stem.split("-")]
        assert codes[:2] == [3, 1]
        assert target == codes[2] - 1 == clip.emotion
        assert (clip.intensity, clip.statement, clip.repetition, clip.actor) == (
            codes[3] - 1,
            codes[4],
            codes[5],
            codes[6],
        )
        assert clip.path.parent.name == f"Actor_{codes[6]:02d}"
    # One example end to end (decodes one clip).
    s = full[full.ids().index("03-01-05-02-01-02-12")]
    assert s.target == EMOTIONS.index("angry") == 4
    assert {k: v for k, v in s.meta.items() if k != "path"} == {
        "actor": 12,
        "gender": "female",
        "intensity": "strong",
        "statement": 1,
        "repetition": 2,
        "emotion": "angry",
    }
    assert full[0].meta["gender"] == "male"  # actor 01: odd


def test_actors_never_on_both_sides() -> None:
    train = load_dataset("ravdess_speech", split="train")
    test = load_dataset("ravdess_speech", split="test")
    assert set(train.groups()).isdisjoint(test.groups())
    assert set(test.groups()) == {f"Actor_{a:02d}" for a in TEST_ACTORS}
    genders = Counter("male" if a % 2 else "female" for a in TEST_ACTORS)
    assert genders == {"male": 2, "female": 2}
    other = load_dataset("ravdess_speech", split="test", test_actors=[1, 2])
    assert set(other.groups()) == {"Actor_01", "Actor_02"} and len(other) == 120
    assert len(load_dataset("ravdess_speech", split="train", test_actors=[1, 2])) == 1320


def test_decoding_gives_16khz_mono_of_the_files_length(full: RAVDESSSpeech) -> None:
    for i in (0, 700, 1439):
        clip = full.clips()[i]
        frames = sf.info(str(clip.path)).frames
        wave = _wave(full, i)
        assert wave.dtype == torch.float32 and wave.shape == (frames,)
        assert 2.9 < frames / 16000 < 5.3
        assert 0.01 < float(wave.abs().max()) <= 1.5
    slow = _load(split="test", sample_rate=8000)
    frames = sf.info(str(slow.clips()[0].path)).frames
    assert _wave(slow, 0).shape == (math.ceil(frames / 2),)
    assert slow.schema["audio"].sample_rate == 8000.0


def test_cache_keeps_the_decoded_clip() -> None:
    ds = _load(split="test", cache=True)
    first = _wave(ds, 3)
    assert _wave(ds, 3) is first
    assert torch.equal(_wave(_load(split="test"), 3), first)


def test_modalities_option_and_argument_errors() -> None:
    ds = load_dataset("ravdess_speech", split="test", modalities=["audio"])
    assert list(ds.schema.names) == ["audio"]
    with pytest.raises(ValueError, match=r"'modalities' parameter of ravdess_speech.*'video'"):
        load_dataset("ravdess_speech", split="test", modalities=["video"])
    with pytest.raises(ValueError, match=r"splits \['train', 'test', 'all'\]"):
        load_dataset("ravdess_speech", split="val")
    with pytest.raises(ValueError, match=r"'sample_rate' parameter of ravdess_speech"):
        load_dataset("ravdess_speech", sample_rate=0)
    with pytest.raises(TypeError, match=r"'test_actors'.*sequence of actor numbers"):
        load_dataset("ravdess_speech", test_actors=21)
    with pytest.raises(ValueError, match=r"actor numbers 1-24.*\[21, 25\]"):
        load_dataset("ravdess_speech", test_actors=[21, 25])
    with pytest.raises(ValueError, match=r"hold out 1 to 23"):
        load_dataset("ravdess_speech", test_actors=list(range(1, 25)))


def test_clip_name_errors_name_the_file() -> None:
    assert parse_clip_name("Actor_03/03-01-08-02-01-01-03.wav").emotion == 7
    with pytest.raises(ValueError, match=r"x\.ogg is not named '03-01-EE-II-SS-RR-AA\.ogg'"):
        parse_clip_name("Actor_03/x.ogg")
    with pytest.raises(ValueError, match=r"03-01-09-01-01-01-03\.ogg: emotion 09 is not 01-08"):
        parse_clip_name("03-01-09-01-01-01-03.ogg")
    with pytest.raises(ValueError, match=r"neutral \(01\) has no strong intensity"):
        parse_clip_name("03-01-01-02-01-01-03.ogg")
    with pytest.raises(ValueError, match=r"actor 25 is not 01-24"):
        parse_clip_name("03-01-02-01-01-01-25.ogg")


def _small_copy(data_root: Path, dest: Path, names: dict[str, str]) -> None:
    """``dest/Actor_NN/<name>`` for each (folder/name -> source clip name)."""
    src = data_root / "ravdess_speech"
    for rel, source in names.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / source, dest / rel)


def test_folder_errors_name_the_file_and_the_fix(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No RAVDESS clips .* under"):
        RAVDESSSpeech(tmp_path, split="all")
    _small_copy(
        data_root, tmp_path, {"Actor_02/03-01-02-01-01-01-01.ogg": MARKER}
    )  # actor 01's name in actor 02's folder
    with pytest.raises(ValueError, match=r"names actor 01 but lies in Actor_02; move it"):
        RAVDESSSpeech(tmp_path, split="all")
    with pytest.raises(ValueError, match=r"'test_actors'.*names actors \[21, 22, 23, 24\]"):
        (tmp_path / "Actor_02" / "03-01-02-01-01-01-01.ogg").rename(
            tmp_path / "Actor_02" / "03-01-02-01-01-01-02.ogg"
        )
        RAVDESSSpeech(tmp_path, split="all")
    cut = tmp_path / "Actor_02" / "03-01-02-01-01-01-02.ogg"
    cut.write_bytes(cut.read_bytes()[:100])
    ds = RAVDESSSpeech(tmp_path, split="test", test_actors=[2])
    with pytest.raises(DecodeError, match=r"ravdess_speech\[0\].*03-01-02-01-01-01-02\.ogg"):
        ds[0]


def _wav48k(path: Path) -> bytes:
    """A clip as upstream holds it: 48 kHz 16-bit WAV (here made from the 16 kHz copy)."""
    from polymodal.data.decode import resample_audio

    wave = resample_audio(decode_audio(path), 16000, 48000).clamp(-1, 1)
    out = io.BytesIO()
    sf.write(out, wave.numpy(), 48000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_a_users_wav_copy_is_read(data_root: Path, tmp_path: Path) -> None:
    ogg = data_root / "ravdess_speech" / MARKER
    (tmp_path / "Actor_24").mkdir()
    (tmp_path / MARKER).with_suffix(".wav").write_bytes(_wav48k(ogg))
    ds = _load(split="test", root=tmp_path, test_actors=[24])
    assert len(ds) == 1 and ds.ids() == ["03-01-08-02-02-02-24"] and ds.targets() == [7]
    wave = _wave(ds, 0)
    reference = decode_audio(ogg)
    assert abs(wave.shape[0] - reference.shape[0]) <= 1
    n = min(wave.shape[0], reference.shape[0])
    assert float(torch.corrcoef(torch.stack([wave[:n], reference[:n]]))[0, 1]) > 0.99


def test_download_fetches_upstreams_wav_and_reencodes_it(data_root: Path, tmp_path: Path) -> None:
    source = SOURCES["ravdess_speech"]
    assert source.upstream_url(MARKER).endswith(
        "RAVDESS-emotions-speech-audio-only/29dc10e/Audio_Speech_Actors_01-24/"
        "Actor_24/03-01-08-02-02-02-24.wav"
    )
    assert not source.matches_upstream(MARKER)  # re-encoded: no sha256 check from upstream
    # Upstream laid out locally (file:// URLs), fetched through the real code path.
    upstream = tmp_path / "upstream"
    (upstream / "Actor_24").mkdir(parents=True)
    ogg = data_root / "ravdess_speech" / MARKER
    (upstream / MARKER).with_suffix(".wav").write_bytes(_wav48k(ogg))
    local = Source(
        "ravdess_speech",
        "test",
        MARKER,
        (("", upstream.as_uri() + "/"),),
        differs=("",),
        unchecked=("",),  # no sha256 of upstream's WAVs is known: reported as unchecked
        transform=source.transform,
        upstream_name=source.upstream_name,
    )
    assert source.unchecked == ("",)
    assert _fetch_one(local, MARKER, "0" * 64, tmp_path / "got", None, {}, 1, 10) is True
    got = tmp_path / "got" / MARKER
    assert got.read_bytes()[:4] == b"OggS"
    info = sf.info(str(got))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "OPUS")
    wave, reference = decode_audio(got), decode_audio(ogg)
    assert abs(wave.shape[0] - reference.shape[0]) <= 1
    n = min(wave.shape[0], reference.shape[0])
    assert float(torch.corrcoef(torch.stack([wave[:n], reference[:n]]))[0, 1]) > 0.95
    assert reencode_upstream_wav("UPSTREAM_README.md", b"text") == b"text"
    with pytest.raises(ValueError, match=r"Actor_01/x\.ogg.*not a readable WAV"):
        reencode_upstream_wav("Actor_01/x.ogg", b"RIFF" + bytes(40))


def test_loads_in_a_training_batch() -> None:
    ds = _load(split="test")
    batch = ds.batch([0, 1])
    audio = batch.modalities["audio"]
    assert isinstance(audio.values, torch.Tensor)
    lengths = [sf.info(str(c.path)).frames for c in ds.clips()[:2]]
    assert audio.values.shape == (2, max(lengths))
    assert audio.lengths is not None and audio.lengths.tolist() == lengths
    assert batch.target is not None
    assert np.array_equal(batch.target.numpy(), np.asarray(ds.targets()[:2]))
