"""Bounded reads: every decoder checks its limit from the header or the file size first.

Budgets are tested with small limits on small files; "huge" files are tiny files whose
headers claim huge sizes, so nothing here allocates much memory.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

import polymodal.data.decode.limits as limits_mod
import polymodal.data.decode.video as video_mod
from polymodal import ManifestDataset
from polymodal.data import ModalityKind
from polymodal.data.decode import (
    DecodeError,
    DecodeLimits,
    LimitError,
    decode_audio,
    decode_audio_track,
    decode_features,
    decode_file,
    decode_image,
    decode_text,
    decode_timeseries,
    decode_video,
    get_limits,
    inferred_image_shape,
    iter_video_frames,
    override_limits,
    set_limits,
)

JPEG = "flickr8k/images/1000268201_693b08cb0e.jpg"
WAV = "fsdd/recordings/0_george_0.wav"
MPG = "grid_samples/bbaf2n.mpg"
HAR = "har_phone_watch/DATA/s01/s01_01_sp.csv"


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the defaults; set_limits in a test does not leak."""
    monkeypatch.delenv(limits_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(limits_mod, "_set", None)
    yield


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG of a few dozen bytes whose header claims ``width x height`` (RGB, 8 bit).

    Its IDAT holds garbage: decoding it would fail as damaged, so a LimitError shows that
    the header alone was read.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"not deflate data")
        + chunk(b"IEND", b"")
    )
    return path


# --------------------------------------------------------------------------- the settings


def test_defaults_env_and_setters(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_limits() == DecodeLimits()
    assert get_limits().max_image_pixels == 50_000_000
    monkeypatch.setenv("POLYMODAL_LIMITS", "max_image_pixels=1000, max_audio_seconds=2.5")
    assert get_limits().max_image_pixels == 1000
    assert get_limits().max_audio_seconds == 2.5
    with override_limits(max_image_pixels=7):
        assert get_limits().max_image_pixels == 7
    assert get_limits().max_image_pixels == 1000
    before = set_limits(max_text_chars=5)
    assert before.max_text_chars == 1_000_000 and get_limits().max_text_chars == 5
    assert get_limits().max_image_pixels == 1000  # set on top of what was in force


def test_bad_settings_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"Unknown config key 'max_pixels'.*'max_image_pixels'"):
        set_limits(max_pixels=10)
    with pytest.raises(ValueError, match=r"'max_audio_seconds' must be a finite number, got nan"):
        set_limits(max_audio_seconds=float("nan"))
    with pytest.raises(ValueError, match=r"'max_text_chars' must be >= 1, got 0"):
        set_limits(max_text_chars=0)
    monkeypatch.setenv("POLYMODAL_LIMITS", "max_image_pixel=10")
    with pytest.raises(
        ValueError, match=r"POLYMODAL_LIMITS='max_image_pixel=10'.*Did you mean 'max_image_pixels'"
    ):
        get_limits()


# --------------------------------------------------------------------------- special files


@pytest.mark.parametrize(
    "decode",
    [
        lambda p: decode_image(p),
        lambda p: decode_audio(p),
        lambda p: decode_timeseries(p),
        lambda p: decode_file(p, "timeseries"),
        lambda p: decode_file(p, "text"),
        lambda p: decode_features(p),
        lambda p: decode_video(p),
        lambda p: decode_audio_track(p, 16000),
    ],
)
def test_devices_and_fifos_are_refused_before_opening(tmp_path: Path, decode: object) -> None:
    if os.path.exists("/dev/zero"):
        with pytest.raises(DecodeError, match=r"'/dev/zero'.*is a character device.*regular"):
            decode(Path("/dev/zero"))  # type: ignore[operator]
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # opening it for reading would block forever: it must not be opened
    with pytest.raises(DecodeError, match=r"pipe\.csv' is a FIFO \(named pipe\)"):
        decode(fifo)  # type: ignore[operator]
    with pytest.raises(DecodeError, match=r"is a directory"):
        decode(tmp_path)  # type: ignore[operator]


# --------------------------------------------------------------------------- images


def test_png_claiming_huge_dimensions_is_refused_from_its_header(tmp_path: Path) -> None:
    # 8,000 x 8,000 is over our default (50 MP) and under Pillow's own bound.
    big = _png_header(tmp_path / "big.png", 8000, 8000)
    assert big.stat().st_size < 100
    with pytest.raises(
        LimitError,
        match=r"'.*big\.png' \(row 4\): it is 8,000 x 8,000 = 64,000,000 pixels \(read from "
        r"its header; nothing was decoded\), over the limit max_image_pixels = 50,000,000\. "
        r"Fix: shrink it.*set_limits\(max_image_pixels=64_000_000\).*"
        r"POLYMODAL_LIMITS=max_image_pixels=64000000",
    ) as info:
        decode_image(big, size=224, where="row 4")
    assert info.value.limit == "max_image_pixels" and info.value.value == 64_000_000
    # 100,000 x 100,000: Pillow refuses it first; the message is still ours.
    huge = _png_header(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(
        LimitError, match=r"huge\.png.*10,000,000,000 pixels.*max_image_pixels = 50,000,000"
    ):
        decode_image(huge)
    # Just over the limit is refused; at the limit the header passes and the garbage data
    # then fails as damaged: the limit, read from the header, is what stopped the decode.
    small = _png_header(tmp_path / "small.png", 300, 300)
    with override_limits(max_image_pixels=89_999), pytest.raises(LimitError, match="90,000"):
        decode_image(small)
    with override_limits(max_image_pixels=90_000), pytest.raises(DecodeError, match="damaged"):
        decode_image(small)


def test_pixel_budget_on_a_real_image(data_root: Path) -> None:
    with (
        override_limits(max_image_pixels=50_000),
        pytest.raises(LimitError, match=r"224 x 224 = 50,176 pixels.*max_image_pixels = 50,000"),
    ):
        decode_image(data_root / JPEG)
    with override_limits(max_image_pixels=50_176):
        assert decode_image(data_root / JPEG).shape == (3, 224, 224)


def test_large_images_are_reduced_while_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, size=(10, 8, 3)), np.ones((80, 80, 1)))
    arr = smooth.astype(np.uint8)  # (800, 640, 3): blocks of 80 x 80
    png, jpg = tmp_path / "big.png", tmp_path / "big.jpg"
    Image.fromarray(arr).save(png)
    Image.fromarray(arr).save(jpg, quality=95)
    factors: list[int] = []
    reduce = Image.Image.reduce

    def spy_reduce(self: Image.Image, factor: int, box: object = None) -> Image.Image:
        factors.append(factor)
        return reduce(self, factor)

    drafts: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy_draft(self: JpegImagePlugin.JpegImageFile, mode: object, size: object) -> object:
        out = draft(self, mode, size)  # type: ignore[arg-type]
        drafts.append(self.size)
        return out

    monkeypatch.setattr(Image.Image, "reduce", spy_reduce)
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy_draft)
    full = decode_image(png, normalize=False)  # no target: no reduction
    assert factors == [] and full.shape == (3, 800, 640)
    small = decode_image(png, size=40, normalize=False)
    assert factors == [8]  # 640 // (2 * 40): 80 x 100 pixels become floats, not 640 x 800
    expected = torch.nn.functional.interpolate(
        full[None], size=(40, 40), mode="bilinear", antialias=True
    )[0]
    assert small.shape == (3, 40, 40)
    assert (small - expected).abs().mean() < 0.02
    from_jpeg = decode_image(jpg, size=40, normalize=False)
    assert drafts == [(80, 100)]  # DCT scaling 1/8: >= 2 x 40 on each side
    assert (from_jpeg - expected).abs().mean() < 0.03
    # A target near the file's size is decoded at full size, as before.
    factors.clear()
    decode_image(png, size=(300, 200))
    assert factors == []


def test_inferred_image_size_is_bounded_and_never_upsampled(tmp_path: Path) -> None:
    assert inferred_image_shape((3, 28, 28)) == (3, 28, 28)
    assert inferred_image_shape((3, 10_000, 10_000)) == (3, 224, 224)
    assert inferred_image_shape((1, 600, 400)) == (1, 224, 149)
    with override_limits(inferred_image_side=64):
        assert inferred_image_shape((3, 600, 400)) == (3, 64, 43)
    # A manifest without a schema: the first image is large, every image comes out bounded.
    Image.new("RGB", (600, 450), (200, 10, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 20), (10, 200, 10)).save(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text("image,label\na.png,x\nb.png,y\n")
    ds = ManifestDataset(tmp_path / "m.csv")
    (spec,) = [m for m in ds.schema.modalities if m.kind is ModalityKind.IMAGE]
    assert spec.shape == (3, 168, 224)
    batch = ds.batch([0, 1])
    assert tuple(batch["image"].values.shape) == (2, 3, 168, 224)
    # A tiny file claiming 10,000 x 10,000 in a manifest: refused naming its row and column.
    _png_header(tmp_path / "huge.png", 10_000, 10_000)
    (tmp_path / "m2.csv").write_text("image,label\nb.png,x\nhuge.png,y\n")
    ds = ManifestDataset(tmp_path / "m2.csv")
    with pytest.raises(
        LimitError, match=r"huge\.png' \(m2\.csv: row 3, column 'image'\).*max_image_pixels"
    ):
        ds[1]


# --------------------------------------------------------------------------- audio and video


def test_audio_duration_is_checked_from_the_header(data_root: Path) -> None:
    wav = data_root / WAV
    seconds = len(decode_audio(wav)) / 8000
    with override_limits(max_audio_seconds=0.1):
        with pytest.raises(
            LimitError,
            match=rf"audio '.*0_george_0\.wav': it lasts {seconds:.1f} s \(read from its header; "
            r"nothing was decoded\), over the limit max_audio_seconds = 0\.1\. Fix: cut it.*"
            r"max_seconds=.*set_limits\(max_audio_seconds=1\)",
        ):
            decode_audio(wav)
        assert decode_audio(wav, max_seconds=0.05).shape == (400,)  # bounded by the caller


def test_video_limits(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mpg = data_root / MPG
    with override_limits(max_video_seconds=1):
        with pytest.raises(
            LimitError,
            match=r"video '.*bbaf2n\.mpg': it lasts 3\.\d s \(read from its header.*"
            r"max_video_seconds = 1\. Fix: cut it.*max_frames=.*max_video_seconds=[34]",
        ):
            decode_video(mpg)
        with pytest.raises(LimitError, match=r"max_video_seconds = 1"):
            next(iter_video_frames(mpg, fps=5))
        assert decode_video(mpg, fps=10, max_frames=5).frames.shape[0] == 5  # 0.5 s read
    with (
        override_limits(max_image_pixels=1000),
        pytest.raises(
            LimitError, match=r"video '.*': it is 360 x 288 = 103,680 pixels.*max_image_pixels"
        ),
    ):
        decode_video(mpg)
    with (
        override_limits(max_video_bytes=10_000_000),
        pytest.raises(
            LimitError,
            match=r"its 75 frames of 3 x 288 x 360 float32 would take 93,312,000 bytes.*"
            r"max_video_bytes = 10,000,000.*iter_video_frames",
        ),
    ):
        decode_video(mpg)
    with override_limits(max_video_bytes=10_000_000):
        assert decode_video(mpg, fps=5, size=32).frames.shape == (15, 3, 32, 32)
    with (
        override_limits(max_audio_seconds=1),
        pytest.raises(
            LimitError, match=r"audio '.*bbaf2n\.mpg': it lasts 3\.\d s.*max_audio_seconds = 1"
        ),
    ):
        decode_audio_track(mpg, 16000)
    # A header that says nothing of the duration: the limits stop the decode itself.
    monkeypatch.setattr(video_mod, "_media_seconds", lambda container, stream: None)
    with (
        override_limits(max_video_seconds=1),
        pytest.raises(LimitError, match=r"its video runs past 1\.0 s \(its header did not say so"),
    ):
        decode_video(mpg, size=8)
    with (
        override_limits(max_video_bytes=3_000_000),
        pytest.raises(
            LimitError, match=r"its 3 frames of 3 x 288 x 360 float32 would take 3,732,480 bytes"
        ),
    ):
        decode_video(mpg)


# --------------------------------------------------------------------------- tables, text


def test_timeseries_size_and_row_budgets(data_root: Path, tmp_path: Path) -> None:
    har = data_root / HAR
    size = har.stat().st_size
    with (
        override_limits(max_timeseries_bytes=1000),
        pytest.raises(
            LimitError,
            match=rf"time series '.*s01_01_sp\.csv' \(row 2\): the file has {size:,} bytes, over "
            rf"the limit max_timeseries_bytes = 1,000\. Fix: split it.*"
            rf"max_timeseries_bytes={size}",
        ),
    ):
        decode_timeseries(har, where="row 2")
    # A large file without newlines is refused by its size, before a line is read.
    flat = tmp_path / "flat.csv"
    flat.write_text("1," * 5000)
    with (
        override_limits(max_timeseries_bytes=1000),
        pytest.raises(LimitError, match=r"flat\.csv.*10,000 bytes"),
    ):
        decode_file(flat, "timeseries")
    with (
        override_limits(max_timeseries_rows=10),
        pytest.raises(
            LimitError,
            match=r"it has more than 10 rows \(reading stopped at line 12\), over the limit "
            r"max_timeseries_rows = 10",
        ),
    ):
        decode_timeseries(har)
    with override_limits(max_timeseries_rows=10_000_000):
        assert decode_timeseries(har).values.shape[1] == 6


def test_text_character_budget(tmp_path: Path) -> None:
    with override_limits(max_text_chars=10):
        assert decode_text("ten chars!") == "ten chars!"
    with (
        override_limits(max_text_chars=10),
        pytest.raises(
            LimitError,
            match=r"Cannot decode text \(row 7, column 'caption'\): it has 11 characters, over the "
            r"limit max_text_chars = 10\. Fix: shorten it.*max_text_chars=11",
        ),
    ):
        decode_text("x" * 11, where="row 7, column 'caption'")
    doc = tmp_path / "doc.txt"
    doc.write_text("é" * 50, encoding="utf-8")
    with (
        override_limits(max_text_chars=10),
        pytest.raises(LimitError, match=r"doc\.txt.*more than 10 characters \(100 bytes\)"),
    ):
        decode_file(doc, "text")
    with override_limits(max_text_chars=50):
        assert decode_file(doc, "text") == "é" * 50


def test_feature_file_budget(tmp_path: Path) -> None:
    npy = tmp_path / "f.npy"
    np.save(npy, np.zeros(1000, dtype=np.float32))
    with (
        override_limits(max_feature_bytes=1000),
        pytest.raises(
            LimitError, match=r"features '.*f\.npy': the file has 4,128 bytes.*max_feature_bytes"
        ),
    ):
        decode_features(npy)
    npz = tmp_path / "f.npz"
    np.savez_compressed(npz, np.zeros(10_000, dtype=np.float32))  # tiny on disk
    assert npz.stat().st_size < 1000
    with (
        override_limits(max_feature_bytes=1000),
        pytest.raises(LimitError, match=r"f\.npz.*its array unpacks to 40,128 bytes"),
    ):
        decode_features(npz)
