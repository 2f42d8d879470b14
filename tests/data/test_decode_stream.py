"""Streaming decoders: chunked frames equal decode_video's; the audio track alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal.data.decode import (
    DecodeError,
    decode_audio_track,
    decode_video,
    has_video_stream,
    iter_video_frames,
)


@pytest.fixture(scope="module")
def grid(data_root: Path) -> Path:
    return data_root / "grid_samples" / "bbaf2n.mpg"


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_chunks_equal_the_whole_clip(grid: Path, chunk: int) -> None:
    clip = decode_video(grid, fps=5.0)
    parts = list(iter_video_frames(grid, 5.0, chunk=chunk))
    assert all(len(f) <= chunk for f, _ in parts)
    assert torch.equal(torch.cat([f for f, _ in parts]), clip.frames)
    assert torch.equal(torch.cat([t for _, t in parts]), clip.timestamps)


def test_audio_track_equals_decode_video_audio(grid: Path, data_root: Path) -> None:
    clip = decode_video(grid, fps=5.0, audio_rate=16000)
    wave = decode_audio_track(grid, 16000)
    assert wave is not None and clip.audio is not None
    n = min(len(wave), len(clip.audio))
    assert abs(len(wave) - len(clip.audio)) < 160  # within 10 ms
    torch.testing.assert_close(wave[:n], clip.audio[:n])
    assert has_video_stream(grid)
    ogg = next((data_root / "ravdess_speech" / "Actor_01").glob("*.ogg"))
    assert not has_video_stream(ogg)
    audio = decode_audio_track(ogg, 16000)
    assert audio is not None and 2 * 16000 < len(audio) < 6 * 16000


def test_bad_files_and_arguments(grid: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(grid.read_bytes()[:3000])
    with pytest.raises(DecodeError, match=r"cut\.mpg"):
        list(iter_video_frames(cut, 5.0))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError, match=r"junk\.mp4.*FFmpeg"):
        has_video_stream(junk)
    with pytest.raises(ValueError, match="'fps' parameter must be a positive number"):
        next(iter_video_frames(grid, 0.0))
    with pytest.raises(ValueError, match="'chunk' parameter must be a positive int"):
        next(iter_video_frames(grid, 5.0, chunk=0))
