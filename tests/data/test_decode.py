"""Decoders on real files (damaged copies are made in tmp_path, never in the shared data)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from polymodal.data import ModalityKind, ModalitySpec
from polymodal.data.decode import (
    EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DecodeError,
    MissingFileError,
    TimeSeries,
    VideoClip,
    decode_audio,
    decode_features,
    decode_file,
    decode_image,
    decode_text,
    decode_timeseries,
    decode_video,
    image_from_array,
    kind_from_extension,
    resample_audio,
)

JPEG = "flickr8k/images/1000268201_693b08cb0e.jpg"
WAV = "fsdd/recordings/0_george_0.wav"
MPG = "grid_samples/bbaf2n.mpg"
HAR = "har_phone_watch/DATA/s01/s01_01_sp.csv"
HAR_CHANNELS = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"]


@pytest.fixture
def jpeg(data_root: Path) -> Path:
    return data_root / JPEG


@pytest.fixture
def wav(data_root: Path) -> Path:
    return data_root / WAV


@pytest.fixture
def mpg(data_root: Path) -> Path:
    return data_root / MPG


@pytest.fixture
def har(data_root: Path) -> Path:
    return data_root / HAR


# ------------------------------------------------------------------------------- images


def test_decode_image_real_jpeg_range_and_normalisation(jpeg: Path) -> None:
    raw = decode_image(jpeg, normalize=False)
    assert raw.shape == (3, 224, 224) and raw.dtype == torch.float32
    assert raw.min() >= 0 and raw.max() <= 1
    expected = np.asarray(Image.open(jpeg).convert("RGB"), dtype=np.float32) / 255
    assert torch.allclose(raw, torch.from_numpy(expected).permute(2, 0, 1))
    norm = decode_image(jpeg)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(norm, (raw - mean) / std, atol=1e-6)


def test_decode_image_white_pixel_values(tmp_path: Path) -> None:
    path = tmp_path / "white.png"
    Image.new("RGB", (5, 4), (255, 255, 255)).save(path)
    x = decode_image(path)
    assert x.shape == (3, 4, 5)
    for c in range(3):
        assert x[c].allclose(torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    y = decode_image(path, mean=(0.5,), std=(0.25,))
    assert y.allclose(torch.tensor(2.0))


@pytest.mark.parametrize(("size", "shape"), [(64, (3, 64, 64)), ((48, 80), (3, 48, 80))])
def test_decode_image_resize(jpeg: Path, size: int | tuple[int, int], shape: tuple) -> None:
    x = decode_image(jpeg, size=size, normalize=False)
    assert x.shape == shape
    assert x.min() >= 0 and x.max() <= 1
    # Antialiased downscaling keeps the mean brightness.
    assert abs(x.mean() - decode_image(jpeg, normalize=False).mean()) < 0.01


def test_decode_image_grayscale_is_luma(jpeg: Path) -> None:
    g = decode_image(jpeg, normalize=False, grayscale=True)
    assert g.shape == (1, 224, 224)
    luma = np.asarray(Image.open(jpeg).convert("L"), dtype=np.float32) / 255
    assert torch.allclose(g[0], torch.from_numpy(luma))


@pytest.mark.parametrize("mode", ["P", "RGBA", "L", "LA", "CMYK"])
def test_decode_image_any_mode_gives_three_channels(jpeg: Path, tmp_path: Path, mode: str) -> None:
    im = Image.open(jpeg).convert(mode)
    path = tmp_path / ("img.tif" if mode == "CMYK" else "img.png")
    im.save(path)
    x = decode_image(path, normalize=False)
    assert x.shape == (3, 224, 224)
    expected = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    assert torch.allclose(x, torch.from_numpy(expected).permute(2, 0, 1))
    if mode in ("L", "LA"):
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_decode_image_16_bit_png_is_scaled(tmp_path: Path) -> None:
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    x = decode_image(path, normalize=False)
    assert x.shape == (3, 2, 2)
    assert torch.allclose(x[0], torch.from_numpy(arr.astype(np.float32) / 65535))


def test_decode_image_flipped_bytes_raise_naming_file(jpeg: Path, tmp_path: Path) -> None:
    data = bytearray(jpeg.read_bytes())
    body = data.find(b"\xff\xda") + 20  # start of scan: the entropy-coded image data
    for i in range(body, body + 200):
        data[i] ^= 0xFF
    bad = tmp_path / "flipped.jpg"
    bad.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r"'.*flipped\.jpg' \(row 3\).*damaged"):
        decode_image(bad, where="row 3")


def test_decode_image_truncated_and_not_an_image(jpeg: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    with pytest.raises(DecodeError, match=r"cut\.jpg.*truncated"):
        decode_image(cut)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DecodeError, match=r"notes\.png.*does not recognise"):
        decode_image(text)


def test_decode_image_bad_parameters(jpeg: Path) -> None:
    with pytest.raises(ValueError, match=r"'size'.*positive"):
        decode_image(jpeg, size=0)
    with pytest.raises(TypeError, match=r"'size'.*\(H, W\)"):
        decode_image(jpeg, size=(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'mean'.*1 or 3 values.*got 2"):
        decode_image(jpeg, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"'std'.*positive"):
        decode_image(jpeg, std=(0.0, 1.0, 1.0))


def test_image_from_array_matches_file_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    digit = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
    path = tmp_path / "digit.png"
    Image.fromarray(digit).save(path)
    for kwargs in ({}, {"size": 56}, {"grayscale": True, "size": (14, 20)}):
        from_array = image_from_array(digit, **kwargs)  # type: ignore[arg-type]
        from_file = decode_image(path, **kwargs)  # type: ignore[arg-type]
        assert from_array.shape == from_file.shape
        assert torch.allclose(from_array, from_file, atol=1e-6)
    rgb = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    assert image_from_array(rgb, normalize=False).shape == (3, 6, 7)
    assert image_from_array(rgb, grayscale=True).shape == (1, 6, 7)


def test_image_from_array_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match=r"uint8.*\(row 2\).*float64"):
        image_from_array(np.zeros((4, 4)), where="row 2")
    with pytest.raises(ValueError, match=r"shape \(H, W\).*\(4, 4, 2\)"):
        image_from_array(np.zeros((4, 4, 2), dtype=np.uint8))


# -------------------------------------------------------------------------------- audio


def test_decode_audio_fsdd_matches_pcm(wav: Path) -> None:
    wave = decode_audio(wav)
    pcm, rate = sf.read(wav, dtype="int16")
    assert rate == 8000
    assert wave.shape == (len(pcm),) and wave.dtype == torch.float32
    assert torch.allclose(wave, torch.from_numpy(pcm.astype(np.float32) / 32768))
    assert wave.abs().max() <= 1
    up = decode_audio(wav, sample_rate=16000)
    assert up.shape == (2 * len(pcm),)
    assert decode_audio(wav, max_seconds=0.1).shape == (800,)
    assert decode_audio(wav, mono=False).shape == (1, len(pcm))


def test_decode_audio_stereo_mixdown(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(400, 2)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 8000, subtype="FLOAT")
    mono = decode_audio(path)
    assert torch.allclose(mono, torch.from_numpy(stereo.mean(1)))
    both = decode_audio(path, mono=False)
    assert both.shape == (2, 400)
    assert torch.allclose(both, torch.from_numpy(stereo.T.copy()))


@pytest.mark.parametrize(
    ("orig", "new", "freq"), [(8000, 16000, 440.0), (44100, 16000, 1000.0), (16000, 8000, 1500.0)]
)
def test_resample_keeps_frequency_amplitude_and_phase(orig: int, new: int, freq: float) -> None:
    t = torch.arange(orig, dtype=torch.float64) / orig  # 1 s
    wave = (0.5 * torch.sin(2 * math.pi * freq * t)).float()
    out = resample_audio(wave, orig, new)
    assert out.shape == (math.ceil(orig * new / orig),) and out.dtype == torch.float32
    spectrum = torch.fft.rfft(out.double()).abs()
    assert int(spectrum.argmax()) == int(freq)  # 1 s of signal -> 1 Hz bins
    mid = slice(new // 10, -new // 10)  # away from the zero-padded edges
    expected = 0.5 * torch.sin(2 * math.pi * freq * torch.arange(new, dtype=torch.float64) / new)
    assert (out.double()[mid] - expected[mid]).abs().max() < 2e-3  # same amplitude, no shift


def test_resample_exact_length_and_antialiasing() -> None:
    wave = torch.zeros(2, 44101)
    assert resample_audio(wave, 44100, 16000).shape == (2, math.ceil(44101 * 16000 / 44100))
    assert resample_audio(wave, 16000, 16000) is wave
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 6000 * t)  # above the 4 kHz Nyquist of 8 kHz
    down = resample_audio(tone, 16000, 8000)
    assert down[800:-800].abs().max() < 0.01


def test_resample_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match=r"'wave'.*floating.*torch.int16"):
        resample_audio(torch.zeros(10, dtype=torch.int16), 8000, 16000)
    with pytest.raises(ValueError, match=r"'new_rate'.*positive whole number.*-5"):
        resample_audio(torch.zeros(10), 8000, -5)


def test_decode_audio_damaged_files(wav: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:20])  # inside the 44-byte RIFF header
    with pytest.raises(DecodeError, match=r"'.*cut\.wav' \(row 7, column 'audio'\).*soundfile"):
        decode_audio(cut, where="row 7, column 'audio'")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), dtype=np.float32), 8000)
    with pytest.raises(DecodeError, match=r"empty\.wav.*no samples"):
        decode_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(100, np.nan, dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(DecodeError, match=r"nan\.wav.*every sample is NaN"):
        decode_audio(nan)
    with pytest.raises(ValueError, match=r"'max_seconds'.*positive.*-1"):
        decode_audio(wav, max_seconds=-1)


# -------------------------------------------------------------------------------- video


def _synthetic_video(path: Path, frames: int = 20, rate: int = 10) -> None:
    """An MP4 whose frame i is a uniform grey of level 12 * i (identifiable after decoding)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.options = {"qscale": "1"}
        for i in range(frames):
            img = np.full((32, 32, 3), 12 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_decode_video_grid_native_frames_and_audio(mpg: Path) -> None:
    clip = decode_video(mpg, size=32, audio_rate=16000)
    assert isinstance(clip, VideoClip)
    assert clip.frames.shape == (75, 3, 32, 32) and clip.frames.dtype == torch.float32
    assert clip.frames.min() >= 0 and clip.frames.max() <= 1
    assert clip.fps == 25.0
    assert clip.timestamps.dtype == torch.float64
    assert torch.allclose(clip.timestamps, torch.arange(75, dtype=torch.float64) / 25)
    assert clip.audio is not None and clip.audio_rate == 16000
    assert clip.audio.dim() == 1 and 47_000 <= len(clip.audio) <= 48_500  # ~3 s at 16 kHz
    assert clip.audio.abs().max() <= 1.05 and clip.audio.std() > 1e-4
    assert decode_video(mpg, size=32).audio is None  # no audio_rate, no audio


def test_decode_video_fps_picks_frames_by_timestamp(mpg: Path) -> None:
    native = decode_video(mpg, size=(36, 45))
    clip = decode_video(mpg, fps=5, size=(36, 45))
    assert clip.frames.shape == (15, 3, 36, 45)
    assert clip.fps == 5.0
    assert torch.allclose(clip.timestamps, torch.arange(15, dtype=torch.float64) * 0.2)
    for k in range(15):
        assert torch.equal(clip.frames[k], native.frames[5 * k])


def test_decode_video_synthetic_sampling_and_max_frames(tmp_path: Path) -> None:
    path = tmp_path / "ramp.mp4"
    _synthetic_video(path)
    clip = decode_video(path, fps=4)  # targets 0, 0.25, ..., 1.75 s over 20 frames at 10 fps
    levels = (clip.frames.mean(dim=(1, 2, 3)) * 255 / 12).round().long()
    assert levels.tolist() == [0, 2, 5, 7, 10, 12, 15, 17]
    up = decode_video(path, fps=20, max_frames=5)  # faster than native: frames repeat
    levels = (up.frames.mean(dim=(1, 2, 3)) * 255 / 12).round().long()
    assert levels.tolist() == [0, 0, 1, 1, 2]
    assert up.duration == pytest.approx(0.25)
    assert decode_video(path, audio_rate=16000).audio is None  # the file has no audio track


def test_decode_video_max_frames_cuts_audio(mpg: Path) -> None:
    clip = decode_video(mpg, fps=5, size=16, max_frames=4, audio_rate=16000)
    assert clip.frames.shape == (4, 3, 16, 16)
    assert clip.audio is not None and len(clip.audio) == 4 / 5 * 16000


def test_decode_video_truncated_copy_raises(mpg: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(mpg.read_bytes()[: mpg.stat().st_size // 10])
    with pytest.raises(DecodeError, match=r"'.*cut\.mpg'.*truncated or corrupt.*Fix"):
        decode_video(cut, size=16)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video " * 100)
    with pytest.raises(DecodeError, match=r"junk\.mp4.*FFmpeg failed"):
        decode_video(junk)


def test_decode_video_bad_parameters(mpg: Path) -> None:
    with pytest.raises(ValueError, match=r"'fps'.*positive.*0"):
        decode_video(mpg, fps=0)
    with pytest.raises(ValueError, match=r"'max_frames'.*positive int.*0"):
        decode_video(mpg, max_frames=0)


# --------------------------------------------------------------------------- timeseries


def test_decode_timeseries_har(har: Path) -> None:
    ts = decode_timeseries(har)
    assert isinstance(ts, TimeSeries)
    assert ts.columns == HAR_CHANNELS  # label skipped, timestamp apart
    expected = np.loadtxt(har, delimiter=",", skiprows=1, usecols=range(6), dtype=np.float32)
    assert ts.values.shape == (len(expected), 6) and ts.values.dtype == torch.float32
    assert torch.equal(ts.values, torch.from_numpy(expected))
    assert ts.timestamps.dtype == torch.float64
    steps = ts.timestamps.diff()
    assert (steps >= 0).all()  # the phone logs repeat some timestamps: kept
    assert 0.005 < float(steps.median()) < 0.02  # ~100 Hz, in seconds
    assert float(ts.timestamps[0]) == pytest.approx(1657533977.813)


def test_decode_timeseries_column_selection(har: Path) -> None:
    ts = decode_timeseries(har, columns=["z_gyro", "x_acc"], time_unit="s")
    assert ts.columns == ["z_gyro", "x_acc"] and ts.values.shape[1] == 2
    assert float(ts.timestamps[0]) == 1657533977813.0
    with pytest.raises(
        DecodeError, match=r"no column 'x_accel'.*x_acc, y_acc.*Did you mean 'x_acc'"
    ):
        decode_timeseries(har, columns=["x_accel"])
    with pytest.raises(DecodeError, match=r"row 1 \(line 2\), column 'label' holds 'SEATED'"):
        decode_timeseries(har, columns=["x_acc", "label"])
    with pytest.raises(DecodeError, match=r"no column 'time'.*'timestamp_column'.*'timestamp'"):
        decode_timeseries(har, timestamp_column="time")
    with pytest.raises(ValueError, match=r"Unknown time_unit 'sec'"):
        decode_timeseries(har, time_unit="sec")


def _edited_har(har: Path, tmp_path: Path, row: int, column: str, value: str) -> Path:
    lines = har.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    out = tmp_path / "edited.csv"
    out.write_text("\n".join(lines[:50]) + "\n")
    return out


@pytest.mark.parametrize(
    ("value", "shown"), [("nan", "'nan'"), ("abc", "'abc'"), ("", "an empty cell")]
)
def test_decode_timeseries_bad_cell_names_row_and_column(
    har: Path, tmp_path: Path, value: str, shown: str
) -> None:
    bad = _edited_har(har, tmp_path, 5, "y_acc", value)
    with pytest.raises(
        DecodeError, match=rf"edited\.csv.*row 5 \(line 6\), column 'y_acc' holds {shown}"
    ):
        decode_timeseries(bad)


def test_decode_timeseries_timestamps_must_not_go_back(har: Path, tmp_path: Path) -> None:
    bad = _edited_har(har, tmp_path, 10, "timestamp", "1657533977000")
    with pytest.raises(DecodeError, match=r"timestamps go backwards at row 10 \(line 11\).*sort"):
        decode_timeseries(bad)


def test_decode_timeseries_without_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,2\n3,4\n\n5,6\n")
    ts = decode_timeseries(path, timestamp_column=None, sample_rate=50)
    assert ts.values.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert torch.allclose(ts.timestamps, torch.tensor([0.0, 0.02, 0.04], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"timestamp_column=None together with sample_rate"):
        decode_timeseries(path, timestamp_column=None)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DecodeError, match=r"line 3 has 1 cells but the header has 2"):
        decode_timeseries(ragged, timestamp_column=None, sample_rate=1)


# ---------------------------------------------------------------------- text & features


def test_decode_text() -> None:
    assert decode_text("  a dog runs \n") == "a dog runs"
    for empty in (None, "", "   ", float("nan")):
        with pytest.raises(DecodeError, match=r"\(row 4, column 'caption'\): empty text.*missing"):
            decode_text(empty, where="row 4, column 'caption'")
    with pytest.raises(DecodeError, match=r"expected a str, got int 5"):
        decode_text(5)


def test_decode_features_files(tmp_path: Path) -> None:
    vec = np.arange(4, dtype=np.float64)
    seq = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "v.npy", vec)
    np.savez(tmp_path / "s.npz", feats=seq)
    torch.save(torch.tensor(seq), tmp_path / "s.pt")
    np.savetxt(tmp_path / "s.csv", seq, delimiter=",")
    np.savetxt(tmp_path / "v.txt", vec)
    out = decode_features(tmp_path / "v.npy")
    assert out.dtype == torch.float32 and out.tolist() == vec.tolist()
    for name in ("s.npz", "s.pt", "s.csv"):
        assert torch.equal(decode_features(str(tmp_path / name)), torch.from_numpy(seq))
    assert decode_features(tmp_path / "v.txt").tolist() == vec.tolist()


def test_decode_features_values() -> None:
    assert decode_features("[1, 2.5]").tolist() == [1.0, 2.5]
    assert decode_features(json.dumps([[1, 2], [3, 4]])).shape == (2, 2)
    assert decode_features([0.5, 1]).tolist() == [0.5, 1.0]
    assert decode_features(np.ones(3, dtype=np.int64)).dtype == torch.float32
    with pytest.raises(DecodeError, match=r"\(row 2\).*1 NaN/inf value.*index \(1,\)"):
        decode_features([1.0, float("nan")], where="row 2")
    with pytest.raises(DecodeError, match=r"expected shape \(D,\) or \(T, D\), got \(2, 2, 2\)"):
        decode_features(np.zeros((2, 2, 2)))
    with pytest.raises(DecodeError, match=r"not a JSON list of numbers"):
        decode_features("[1, 2,")
    with pytest.raises(DecodeError, match=r"empty"):
        decode_features([])


def test_decode_features_bad_files(tmp_path: Path) -> None:
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(DecodeError, match=r"cube\.npy.*\(2, 3, 4\)"):
        decode_features(tmp_path / "cube.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(DecodeError, match=r"two\.npz.*2 arrays \['a', 'b'\].*exactly one"):
        decode_features(tmp_path / "two.npz")
    torch.save({"w": torch.zeros(2)}, tmp_path / "dict.pt")
    with pytest.raises(DecodeError, match=r"dict\.pt.*holds a dict, expected a tensor"):
        decode_features(tmp_path / "dict.pt")
    (tmp_path / "f.json").write_text("[1]")
    with pytest.raises(DecodeError, match=r"unsupported extension '\.json'.*\.npy"):
        decode_features(tmp_path / "f.json")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.inf]]))
    with pytest.raises(DecodeError, match=r"nan\.npy.*index \(0, 1\)"):
        decode_features(tmp_path / "nan.npy")


# ---------------------------------------------------------------- missing files, dispatch


@pytest.mark.parametrize(
    "decode",
    [decode_image, decode_audio, decode_video, decode_timeseries, decode_features],
    ids=["image", "audio", "video", "timeseries", "features"],
)
def test_missing_file_error(tmp_path: Path, decode: object) -> None:
    missing = tmp_path / "nowhere" / "x.bin"
    with pytest.raises(
        MissingFileError, match=r"File not found: '.*x\.bin' \(row 9\).*relative"
    ) as info:
        decode(missing, where="row 9")  # type: ignore[operator]
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DecodeError)
    assert info.value.path == missing and info.value.where == "row 9"


def test_decode_file_dispatch(jpeg: Path, wav: Path, mpg: Path, har: Path, tmp_path: Path) -> None:
    img = decode_file(jpeg, "image", ModalitySpec("img", "image", shape=(3, 32, 40)))
    assert isinstance(img, torch.Tensor) and img.shape == (3, 32, 40)
    gray = decode_file(jpeg, ModalityKind.IMAGE, ModalitySpec("g", "image", shape=(1, 8, 8)))
    assert isinstance(gray, torch.Tensor) and gray.shape == (1, 8, 8)
    audio = decode_file(wav, "audio", ModalitySpec("a", "audio", sample_rate=16000))
    assert isinstance(audio, torch.Tensor) and audio.shape == (2 * sf.info(wav).frames,)
    clip = decode_file(mpg, "video", ModalitySpec("v", "video", shape=(3, 8, 8), sample_rate=5))
    assert isinstance(clip, VideoClip) and clip.frames.shape == (15, 3, 8, 8)
    ts = decode_file(har, "timeseries", ModalitySpec("phone", "timeseries", shape=(6,)))
    assert isinstance(ts, TimeSeries) and ts.columns == HAR_CHANNELS
    with pytest.raises(DecodeError, match=r"6 numeric channels.*expects shape \(3,\)"):
        decode_file(har, "timeseries", ModalitySpec("phone", "timeseries", shape=(3,)))
    np.save(tmp_path / "seq.npy", np.zeros((5, 4)))
    feats = decode_file(tmp_path / "seq.npy", "features", ModalitySpec("f", "features", shape=(4,)))
    assert isinstance(feats, torch.Tensor) and feats.shape == (5, 4)
    with pytest.raises(DecodeError, match=r"expected 7 features.*got shape \(5, 4\)"):
        decode_file(tmp_path / "seq.npy", "features", ModalitySpec("f", "features", shape=(7,)))
    with pytest.raises(DecodeError, match=r"tabular row.*expected one vector"):
        decode_file(tmp_path / "seq.npy", "tabular")
    (tmp_path / "caption.txt").write_text(" a caption \n")
    assert decode_file(tmp_path / "caption.txt", "text") == "a caption"
    with pytest.raises(ValueError, match=r"kind='audio' but spec 'img' has kind 'image'"):
        decode_file(jpeg, "audio", ModalitySpec("img", "image"))
    with pytest.raises(ValueError, match=r"Unknown modality kind 'imag'.*Did you mean 'image'"):
        decode_file(jpeg, "imag")


def test_decode_file_timeseries_without_timestamp_uses_spec_rate(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    ts = decode_file(path, "timeseries", ModalitySpec("s", "timeseries", sample_rate=10))
    assert isinstance(ts, TimeSeries) and ts.timestamps.tolist() == [0.0, 0.1]
    with pytest.raises(DecodeError, match=r"no 'timestamp' column.*set the spec's sample_rate"):
        decode_file(path, "timeseries", ModalitySpec("s", "timeseries"))


def test_extensions_and_kind_inference(tmp_path: Path, jpeg: Path) -> None:
    assert kind_from_extension("a/b/photo.JPG") is ModalityKind.IMAGE
    assert kind_from_extension(Path("clip.mpg")) is ModalityKind.VIDEO
    assert kind_from_extension("rec.flac") is ModalityKind.AUDIO
    assert kind_from_extension("phone.csv") is ModalityKind.TIMESERIES
    assert kind_from_extension("emb.pth") is ModalityKind.FEATURES
    assert kind_from_extension("notes.txt") is None
    assert kind_from_extension("noext") is None
    every = [e for exts in EXTENSIONS.values() for e in exts]
    assert len(every) == len(set(every)) and all(e == e.lower() for e in every)
    copy = tmp_path / "COPY.JPEG"
    shutil.copy(jpeg, copy)
    kind = kind_from_extension(copy)
    assert kind is ModalityKind.IMAGE
    assert decode_file(copy, kind).shape == (3, 224, 224)  # type: ignore[union-attr]


def test_wav_cut_inside_its_data_chunk_is_reported(tmp_path: Path) -> None:
    """libsndfile clamps a truncated WAV silently; the header's data size gives it away."""
    src = Path(os.environ["POLYMODAL_DATA"]) / "fsdd/recordings/0_george_0.wav"
    raw = src.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[: len(raw) // 2 + 44])
    with pytest.raises(DecodeError, match=r"cut\.wav.*truncated"):
        decode_audio(cut)


def test_a_stray_word_in_a_numeric_column_is_an_error_not_a_skipped_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ts.csv"
    path.write_text("timestamp,ax,ay,label\n0,abc,1.0,walk\n20,0.5,1.5,walk\n40,0.7,1.1,walk\n")
    with pytest.raises(DecodeError, match=r"ts\.csv.*'ax'.*'abc'|ts\.csv.*'abc'.*'ax'"):
        decode_timeseries(path)
    path.write_text("timestamp,ax,label\n0,0.1,walk\n20,0.5,walk\n")  # a column of words
    assert decode_timeseries(path).columns == ["ax"]


def test_float_audio_far_beyond_full_scale_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(800, 5.0, dtype="float32"), 8000, subtype="FLOAT")
    with pytest.raises(DecodeError, match=r"loud\.wav.*samples reach 5.*normalised"):
        decode_audio(path)
    sf.write(path, np.full(800, 1.2, dtype="float32"), 8000, subtype="FLOAT")  # an overshoot
    assert float(decode_audio(path).max()) == pytest.approx(1.2)
