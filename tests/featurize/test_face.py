"""The face stage on real GRID clips: detection, tracking, geometry, aligned crops, embeddings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.align import read_align_file
from polymodal.data.decode import VideoClip, decode_video
from polymodal.featurize.face import (
    EMBEDDING_DIM,
    GEOMETRY,
    FaceAnalyzer,
    FaceFrames,
    concat_face_frames,
    face_geometry,
)
from polymodal.featurize.face_geometry import EYE_ROW, EYE_SPAN, align_matrix
from polymodal.featurize.face_tracking import FaceDetection, FaceTracker, box_iou
from tests.conftest import require

G = {name: i for i, name in enumerate(GEOMETRY)}


@pytest.fixture(scope="module", autouse=True)
def _packages() -> None:
    require("cv2")
    require("mediapipe")


@pytest.fixture(scope="module")
def grid(data_root: Path) -> Path:
    return data_root / "grid_samples"


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer("mediapipe", embed=False)


@pytest.fixture(scope="module")
def speaker(grid: Path) -> VideoClip:
    """id2_vcd_swwp2s.mpg (the clip with word timings) at 5 fps: 15 frames."""
    return decode_video(grid / "id2_vcd_swwp2s.mpg", fps=5.0)


@pytest.fixture(scope="module")
def speaker_faces(analyzer: FaceAnalyzer, speaker: VideoClip) -> FaceFrames:
    return analyzer(speaker.frames, speaker.timestamps)


def _rotate(frames: Tensor, degrees: float) -> Tensor:
    """Rotate frames about their centre (counter-clockwise on screen for positive degrees)."""
    import cv2

    h, w = frames.shape[-2:]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = [
        cv2.warpAffine(f.permute(1, 2, 0).numpy(), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        for f in frames
    ]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------
# detection and tracking on real clips
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bbaf2n.mpg", "lbbc2a.mpg", "swiz3n.mpg"])
def test_mediapipe_finds_one_speaker_in_grid_clips(
    analyzer: FaceAnalyzer, grid: Path, name: str
) -> None:
    clip = decode_video(grid / name, fps=5.0)
    faces = analyzer(clip.frames, clip.timestamps)
    assert len(faces) == 15
    assert faces.present.float().mean() >= 0.95
    assert faces.n_tracks == 1
    # The box holds a face-sized region near the centre of the 360x288 frame.
    box = faces.boxes[faces.present].mean(0)
    assert 60 < float(box[2] - box[0]) < 200 and 60 < float(box[3] - box[1]) < 220
    assert 100 < float(box[0] + box[2]) / 2 < 260
    assert faces.geometry[faces.present].abs().sum(1).gt(0).all()
    assert faces.embedding.shape == (15, 0)  # embed=False


def test_haar_finds_one_speaker_and_the_mesh_gives_its_geometry(
    grid: Path, speaker: VideoClip, speaker_faces: FaceFrames
) -> None:
    faces = FaceAnalyzer("haar", embed=False)(speaker.frames, speaker.timestamps)
    assert faces.present.float().mean() >= 0.95 and faces.n_tracks == 1
    # Haar boxes are squares around the face; the mesh on the crop gives the same geometry
    # as the mesh on the whole frame, within the mesh's own jitter.
    w = faces.boxes[:, 2] - faces.boxes[:, 0]
    h = faces.boxes[:, 3] - faces.boxes[:, 1]
    assert torch.equal(w, h)
    both = faces.present & speaker_faces.present
    diff = (faces.geometry[both] - speaker_faces.geometry[both]).abs().mean(0)
    assert diff.max() < 0.03, dict(zip(GEOMETRY, diff.tolist(), strict=True))


def test_chunks_with_reset_false_match_one_call(
    analyzer: FaceAnalyzer, speaker: VideoClip, speaker_faces: FaceFrames
) -> None:
    parts = [
        analyzer(speaker.frames[i : i + 4], speaker.timestamps[i : i + 4], reset=i == 0)
        for i in range(0, len(speaker.frames), 4)
    ]
    joined = concat_face_frames(parts)
    assert joined.n_tracks == speaker_faces.n_tracks == 1
    assert torch.equal(joined.times, speaker_faces.times)
    assert torch.equal(joined.present, speaker_faces.present)
    torch.testing.assert_close(joined.geometry, speaker_faces.geometry)
    assert len(concat_face_frames([])) == 0


def test_frames_without_a_face_are_absent_and_zero(speaker: VideoClip) -> None:
    analyzer = FaceAnalyzer("mediapipe")  # embed=True: absent frames must still be zero
    background = speaker.frames[:3, :, 0:160, 240:360]  # the blue wall right of the head
    blank = torch.zeros(2, 3, 120, 160)
    for frames in (background, blank):
        faces = analyzer(frames, torch.arange(len(frames)) / 5.0)
        assert not faces.present.any()
        assert faces.n_tracks == 0
        assert faces.boxes.abs().sum() == 0 and faces.geometry.abs().sum() == 0
        assert faces.embedding.shape == (len(frames), EMBEDDING_DIM)
        assert faces.embedding.abs().sum() == 0
        assert faces.times.dtype == torch.float64


# ---------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------


def test_geometry_does_not_depend_on_image_size(
    analyzer: FaceAnalyzer, speaker: VideoClip, speaker_faces: FaceFrames
) -> None:
    half = F.interpolate(speaker.frames, scale_factor=0.5, mode="bilinear", antialias=True)
    small = analyzer(half, speaker.timestamps)
    assert small.present.all() and speaker_faces.present.all()
    torch.testing.assert_close(small.boxes * 2, speaker_faces.boxes, atol=4.0, rtol=0.0)
    diff = (small.geometry - speaker_faces.geometry).abs()  # (F, G), per frame
    assert diff.max() < 0.05, dict(zip(GEOMETRY, diff.max(0).values.tolist(), strict=True))
    # Typical values of a neutral, frontal face (ratios to the inter-ocular distance).
    mean = speaker_faces.geometry.mean(0)
    assert 0.6 < mean[G["mouth_width"]] < 0.9
    assert 0.25 < mean[G["brow_raise"]] < 0.45
    assert 0.1 < mean[G["eye_open"]] < 0.2
    assert mean[[G["yaw"], G["pitch"], G["roll"]]].abs().max() < math.radians(10)


def test_mirrored_frames_flip_yaw_and_roll(analyzer: FaceAnalyzer, grid: Path) -> None:
    # lbbc2a's speaker faces ~6 degrees to one side with a ~3.5 degree tilt.
    clip = decode_video(grid / "lbbc2a.mpg", fps=5.0, max_frames=6)
    faces = analyzer(clip.frames, clip.timestamps).geometry.mean(0)
    mirrored = analyzer(clip.frames.flip(-1), clip.timestamps).geometry.mean(0)
    for name in ("yaw", "roll"):
        a, b = float(faces[G[name]]), float(mirrored[G[name]])
        assert abs(a) > math.radians(2) and a * b < 0, (name, a, b)
        assert abs(a + b) < math.radians(2), (name, a, b)
    # The expression ratios and pitch do not change in a mirror (pitch within 3 degrees).
    ratios = [G[n] for n in GEOMETRY if n not in ("yaw", "pitch", "roll")]
    assert (faces[ratios] - mirrored[ratios]).abs().max() < 0.02
    assert abs(faces[G["pitch"]] - mirrored[G["pitch"]]) < math.radians(3)


def test_roll_follows_a_rotated_frame(
    analyzer: FaceAnalyzer, speaker: VideoClip, speaker_faces: FaceFrames
) -> None:
    frames = speaker.frames[:5]
    tilted = analyzer(_rotate(frames, 10.0), speaker.timestamps[:5])
    # Counter-clockwise on screen raises the eye on the image's right: roll decreases.
    change = tilted.geometry[:, G["roll"]] - speaker_faces.geometry[:5, G["roll"]]
    torch.testing.assert_close(change, torch.full((5,), -math.radians(10)), atol=0.02, rtol=0)
    # The lengths are measured in the face's own frame: rotating the image leaves them.
    lengths = [G[n] for n in ("mouth_open", "mouth_width", "smile", "brow_raise", "eye_open")]
    diff = (tilted.geometry[:, lengths] - speaker_faces.geometry[:5, lengths]).abs()
    assert diff.max() < 0.05


def test_mouth_opens_while_words_are_spoken(
    grid: Path, speaker: VideoClip, speaker_faces: FaceFrames
) -> None:
    """Mouth opening against GRID's word timings for id2_vcd_swwp2s ("set white with p two soon").

    The speaker parts his lips before the first word (mouth_open ~0.16-0.21 in the leading
    0.49 s, checked on the crops), so speech is compared with the closed mouth after the
    last word, and articulation (frame-to-frame change) with all the silence.
    """
    words = read_align_file(grid / "swwp2s.align")
    t = speaker_faces.times
    spoken = torch.zeros(len(t), dtype=torch.bool)
    for w in words:
        spoken |= (t >= w.start) & (t < w.end)
    after = t >= words[-1].end
    mouth = speaker_faces.geometry[:, G["mouth_open"]]
    assert int(spoken.sum()) == 9 and int(after.sum()) == 3
    assert mouth[spoken].mean() > mouth[after].mean() + 0.05
    change = (mouth[1:] - mouth[:-1]).abs()  # between consecutive frames
    both_spoken = spoken[1:] & spoken[:-1]
    both_silent = ~spoken[1:] & ~spoken[:-1]
    assert change[both_spoken].mean() > 2 * change[both_silent].mean()


def test_face_geometry_of_a_synthetic_face() -> None:
    lm = np.zeros((478, 3))
    lm[[33, 133]] = [[-1.5, 0, 0], [-0.5, 0, 0]]  # right eye: centre (-1, 0)
    lm[[362, 263]] = [[0.5, 0, 0], [1.5, 0, 0]]  # left eye: centre (1, 0): IOD = 2
    lm[[159, 145]] = [[-1, -0.2, 0], [-1, 0.2, 0]]
    lm[[386, 374]] = [[1, -0.1, 0], [1, 0.1, 0]]
    lm[[70, 63, 105, 66, 107]] = [-1, -0.8, 0]
    lm[[300, 293, 334, 296, 336]] = [1, -0.6, 0]
    lm[[61, 291]] = [[-0.8, 1.9, 0], [0.8, 1.9, 0]]
    lm[13], lm[14] = [0, 2.0, 0], [0, 2.4, 0]
    lm[10], lm[152] = [0, -1.5, 0], [0, 3.5, 0]
    g = face_geometry(lm * 37.0)  # any scale
    expected = [0.2, 0.8, 0.05, 0.35, 0.15, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(g, expected, atol=1e-6)
    # Turned: the left eye farther from the camera -> positive yaw; chin farther -> pitch.
    turned = lm.copy()
    turned[[362, 263], 2] = 2 * math.tan(0.3)
    turned[152, 2] = 5 * math.tan(0.2)
    g = face_geometry(turned)
    assert g[G["yaw"]] == pytest.approx(0.3, abs=1e-6)
    assert g[G["pitch"]] == pytest.approx(0.2, abs=0.02)


# ---------------------------------------------------------------------------------------
# aligned crops and embeddings
# ---------------------------------------------------------------------------------------


def test_align_matrix_levels_and_scales_the_eyes() -> None:
    lm = np.zeros((478, 2))
    angle = math.radians(25)
    for idx, x in ((33, -30), (133, -10), (362, 10), (263, 30)):  # IOD 40 before rotation
        lm[idx] = [100 + x * math.cos(angle), 80 + x * math.sin(angle)]
    m = align_matrix(lm, 200)
    eyes = np.array([lm[[33, 133]].mean(0), lm[[362, 263]].mean(0)])
    mapped = eyes @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped[:, 1], [EYE_ROW * 200] * 2, atol=1e-9)
    np.testing.assert_allclose(mapped[1, 0] - mapped[0, 0], EYE_SPAN * 200, atol=1e-9)
    np.testing.assert_allclose(mapped.mean(0)[0], 100, atol=1e-9)


def test_embeddings_are_finite_deterministic_and_per_frame(grid: Path) -> None:
    clip = decode_video(grid / "bbaf2n.mpg", fps=5.0, max_frames=3)
    analyzer = FaceAnalyzer("mediapipe", crop_size=224, batch_size=2)
    first = analyzer(clip.frames, clip.timestamps)
    again = analyzer(clip.frames, clip.timestamps)
    assert first.embedding.shape == (3, EMBEDDING_DIM) and first.embedding.dtype == torch.float32
    assert torch.isfinite(first.embedding).all()
    assert torch.equal(first.embedding, again.embedding)
    assert first.embedding.norm(dim=1).min() > 1.0
    # Neighbouring frames of one face are close; a different image is not.
    cos = F.cosine_similarity(first.embedding[0], first.embedding[1], dim=0)
    assert cos > 0.9
    crops = analyzer.crops(
        (clip.frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()[:1],
        {0: FaceDetection(np.array([0.0, 0.0, 120.0, 120.0]))},  # no landmarks: box crop
    )
    other = analyzer.embed_crops(crops)[0]
    assert F.cosine_similarity(first.embedding[0], other, dim=0) < cos


# ---------------------------------------------------------------------------------------
# tracking
# ---------------------------------------------------------------------------------------


def test_tracker_links_by_overlap_and_prefers_the_large_central_face() -> None:
    tracker = FaceTracker(min_iou=0.3, max_gap=1.0)
    speaker = np.array([100.0, 60.0, 220.0, 200.0])
    bystander = np.array([300.0, 10.0, 340.0, 50.0])
    for k in range(5):
        step = np.array([2.0 * k, 0, 2.0 * k, 0])  # the speaker drifts slowly
        ids = tracker.update(
            [FaceDetection(bystander), FaceDetection(speaker + step)], k / 5, 288, 360
        )
        assert ids == [0, 1]
    assert tracker.n_tracks == 2
    assert max(range(2), key=lambda i: tracker.scores[i]) == 1
    # After a gap longer than max_gap, the same place starts a new track.
    assert tracker.update([FaceDetection(speaker)], 3.0, 288, 360) == [2]
    assert box_iou(speaker, speaker) == 1.0 and box_iou(speaker, bystander) == 0.0


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------


def test_bad_inputs_name_the_parameter(analyzer: FaceAnalyzer) -> None:
    frames = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"'frames'.*\(F, 3, H, W\).*got \(2, 32, 32, 3\)"):
        analyzer(frames.permute(0, 2, 3, 1), torch.zeros(2))
    with pytest.raises(TypeError, match=r"'frames'.*torch\.Tensor"):
        analyzer(frames.numpy(), torch.zeros(2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'frames'.*dtype torch\.int64"):
        analyzer(frames.long(), torch.zeros(2))
    with pytest.raises(ValueError, match=r"'times'.*\(2,\).*got \(3,\)"):
        analyzer(frames, torch.zeros(3))
    with pytest.raises(ValueError, match=r"'detector'.*Did you mean 'mediapipe'"):
        FaceAnalyzer("mediapip")
    with pytest.raises(ValueError, match=r"'crop_size'.*>= 32.*got 8"):
        FaceAnalyzer(crop_size=8)
    with pytest.raises(ValueError, match=r"'min_iou'.*\[0, 1.0\].*got 1.5"):
        FaceAnalyzer(min_iou=1.5)
    with pytest.raises(ValueError, match=r"'landmarks'.*got shape \(68, 2\)"):
        face_geometry(np.zeros((68, 2)))
