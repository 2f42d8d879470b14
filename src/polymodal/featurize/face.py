"""Face stage: the main speaker's face per frame, its crop embedding and expression geometry.

:class:`FaceAnalyzer` takes decoded frames (no file I/O here; the pipeline decodes video) and
returns :class:`FaceFrames`:

1. **Detection.** ``detector="mediapipe"`` runs MediaPipe 0.10.14's 478-point face mesh
   (``refine_landmarks=True``, video mode: it re-detects with its bundled BlazeFace model and
   tracks landmarks between frames) on each whole frame; a face's box is the box of its
   landmarks (brows to chin).  ``detector="haar"`` runs OpenCV's frontal-face Haar cascade
   and then the face mesh (image mode) on a crop around the tracked face, so geometry and
   aligned crops exist with both detectors (a Haar frame where the mesh finds nothing keeps
   its box and a box crop, with zero geometry).
2. **Tracking.** Detections are linked frame to frame by box overlap (IoU >= ``min_iou``,
   bridging gaps up to ``max_gap`` seconds); every chain is a track.  The main speaker is
   the track with the largest sum over its frames of face area (as a fraction of the frame)
   times centrality (1 at the frame centre, 0 at a corner).  A long video can be analysed
   in chunks (``reset=False`` after the first): tracks carry over, and each chunk reports
   the best-scoring track (over the video so far) among those it contains.
3. **Aligned crops.** The frame is rotated about the eye midpoint so the eye line is level,
   scaled so the inter-ocular distance (between the eye-corner midpoints) is
   ``EYE_SPAN * crop_size``, and cut to a ``crop_size`` square with the eyes at height
   ``EYE_ROW * crop_size``; the frozen ``efficientnet_lite0`` encoder embeds the crops
   (ImageNet-normalised, batched) into 1280-d vectors.
4. **Geometry** (:data:`GEOMETRY`, :func:`face_geometry`): lengths are measured in the
   roll-corrected face frame and divided by the inter-ocular distance, so they do not depend
   on the distance to the camera; head pose is in radians.

Measured on the 11 GRID clips (3 s each, 360x288, one frontal speaker; ``FaceAnalyzer(det,
embed=False)`` per clip, pinned to one core with ``taskset -c 0``, torch and OpenCV at one
thread, fastest of 3 runs; the 2-core machine carried a load of 4-5 from other jobs, so
absolute times are high, ratios hold).  ms/frame covers detection, tracking and landmarks
(for Haar: the cascade, about 85-90 % of it, then the mesh on the face crop):

=========  ===  ==================  ===========================  ==========
detector   fps  frames with a face  tracks (one per clip = 11)   ms / frame
=========  ===  ==================  ===========================  ==========
mediapipe    5  165 / 165 (100 %)   11                           20.8
haar         5  165 / 165 (100 %)   11                           93.2
mediapipe   25  825 / 825 (100 %)   11                           16.1
haar        25  825 / 825 (100 %)   11                           72.9
=========  ===  ==================  ===========================  ==========

Aligned crop: 0.4 ms/frame; EfficientNet-Lite0 embedding of a 224x224 crop: ~51 ms/frame
(the stage's largest cost).  Both detectors meet the target (a face in >= 95 % of frames,
one track) on every clip; the default is ``"mediapipe"`` because it is 4.5x faster here, and
its one pass yields the 478 landmarks that geometry and alignment need (the Haar path must
run the mesh on its crop afterwards); beyond these clips, BlazeFace is trained on turned
faces where the frontal cascade is not (not measured here: GRID is all frontal).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.featurize.face_geometry import GEOMETRY, align_matrix, box_matrix, face_geometry
from polymodal.featurize.face_tracking import FaceDetection, FaceTracker

DETECTORS = ("mediapipe", "haar")
EMBEDDING_DIM = 1280
_INSTALL = 'pip install "polymodal[video]"'


@dataclass
class FaceFrames:
    """The main speaker's face in each frame.

    Attributes:
        times: (F,) float64 seconds, the frames' times.
        present: (F,) bool, True where the main speaker's face was found.
        boxes: (F, 4) float32 ``(x0, y0, x1, y1)`` pixels; 0 where absent.
        embedding: (F, 1280) float32 EfficientNet-Lite0 embedding of the aligned crop, 0 where
            absent; (F, 0) from an analyzer built with ``embed=False``.
        geometry: (F, len(GEOMETRY)) float32, see :data:`GEOMETRY`; 0 where absent.
        n_tracks: face tracks seen (1 for a single speaker found throughout); for a video
            analysed in chunks, the tracks seen since the first chunk.
    """

    times: Tensor
    present: Tensor
    boxes: Tensor
    embedding: Tensor
    geometry: Tensor
    n_tracks: int

    def __len__(self) -> int:
        return int(self.times.shape[0])


def concat_face_frames(parts: Sequence[FaceFrames]) -> FaceFrames:
    """Join the :class:`FaceFrames` of consecutive chunks of one video (in order).

    ``n_tracks`` is the largest of the parts' (each counts from the first chunk on).
    """
    if not parts:
        return FaceFrames(
            torch.zeros(0, dtype=torch.float64),
            torch.zeros(0, dtype=torch.bool),
            torch.zeros(0, 4),
            torch.zeros(0, EMBEDDING_DIM),
            torch.zeros(0, len(GEOMETRY)),
            0,
        )
    return FaceFrames(
        torch.cat([p.times for p in parts]),
        torch.cat([p.present for p in parts]),
        torch.cat([p.boxes for p in parts]),
        torch.cat([p.embedding for p in parts]),
        torch.cat([p.geometry for p in parts]),
        max(p.n_tracks for p in parts),
    )


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise ImportError(f"The face stage needs OpenCV; install it with: {_INSTALL}") from e
    return cv2


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (MediaPipe's C++ logs its
    TensorFlow Lite set-up there, bypassing Python); Python's own errors still propagate."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr descriptor
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_mediapipe() -> Any:
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ImportError(f"The face stage needs MediaPipe 0.10.14; install it: {_INSTALL}") from e
    return mp


# ---------------------------------------------------------------------------------------
# the analyzer
# ---------------------------------------------------------------------------------------


@dataclass
class _Stream:
    """What a video keeps between chunks: the tracks and MediaPipe's video-mode mesh."""

    tracker: FaceTracker
    mesh: Any = None


class FaceAnalyzer:
    """Find and track the main speaker's face; embed its aligned crops; measure expression.

    Call it on a clip's frames, or on consecutive chunks of a long video with
    ``reset=False`` after the first (tracks and MediaPipe's landmark tracking carry over).

    Args:
        detector: ``"mediapipe"`` (default: the face mesh on whole frames) or ``"haar"``
            (OpenCV's frontal-face cascade, then the mesh on the face's crop).
        crop_size: side of the aligned crops in pixels (the encoder's native size is 224).
        embed: compute the EfficientNet-Lite0 crop embedding (``False`` skips the encoder
            and gives an (F, 0) embedding, for geometry only).
        max_faces: faces the mesh looks for per frame (more than 1, so that another person
            forms a track of their own instead of taking over the speaker's).
        min_confidence: MediaPipe's detection and tracking confidence.
        min_face: smallest face side for the Haar cascade, as a fraction of the frame's
            shorter side.
        min_iou: box overlap that continues a track.
        max_gap: longest gap (seconds) a track bridges.
        batch_size: crops per encoder call.
    """

    def __init__(
        self,
        detector: str = "mediapipe",
        crop_size: int = 224,
        embed: bool = True,
        max_faces: int = 4,
        min_confidence: float = 0.5,
        min_face: float = 0.1,
        min_iou: float = 0.3,
        max_gap: float = 1.0,
        batch_size: int = 32,
    ) -> None:
        if detector not in DETECTORS:
            from polymodal.errors import did_you_mean

            raise ValueError(
                f"The 'detector' parameter must be one of {list(DETECTORS)}; got {detector!r}."
                + did_you_mean(detector, DETECTORS)
            )
        for name, value, low in (
            ("crop_size", crop_size, 32),
            ("max_faces", max_faces, 1),
            ("batch_size", batch_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"The {name!r} parameter must be an int >= {low}; got {value!r}.")
        for name, number, high in (
            ("min_confidence", min_confidence, 1.0),
            ("min_face", min_face, 1.0),
            ("min_iou", min_iou, 1.0),
            ("max_gap", max_gap, math.inf),
        ):
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not 0 <= number <= high
            ):
                raise ValueError(
                    f"The {name!r} parameter must be a number in [0, {high}]; got {number!r}."
                )
        self.detector = detector
        self.crop_size = crop_size
        self.embed = bool(embed)
        self.max_faces = max_faces
        self.min_confidence = float(min_confidence)
        self.min_face = float(min_face)
        self.min_iou = float(min_iou)
        self.max_gap = float(max_gap)
        self.batch_size = batch_size
        self._cv2 = _import_cv2()
        self._mp = _import_mediapipe()
        self._cascade: Any = None
        self._encoder: Any = None
        self._stream: _Stream | None = None

    def reset(self) -> None:
        """Forget the tracks of the previous video (the next call starts a new one)."""
        if self._stream is not None and self._stream.mesh is not None:
            self._stream.mesh.close()
        self._stream = None

    # -- detection -------------------------------------------------------------------

    def _mesh(self, static: bool, max_faces: int) -> Any:
        return self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
        )

    @staticmethod
    def _landmarks(result: Any, x0: float, y0: float, w: int, h: int) -> list[np.ndarray]:
        """MediaPipe's normalised landmarks -> (478, 3) pixel arrays (z in the x scale)."""
        out = []
        for face in result.multi_face_landmarks or ():
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            out.append(pts * np.array([w, h, w]) + np.array([x0, y0, 0.0]))
        return out

    def _detect_mediapipe(self, image: np.ndarray, stream: _Stream) -> list[FaceDetection]:
        h, w = image.shape[:2]
        if stream.mesh is None:
            # Video mode: landmarks are tracked from frame to frame, so one mesh per video.
            stream.mesh = self._mesh(static=False, max_faces=self.max_faces)
        out = []
        with _native_stderr_quiet():
            result = stream.mesh.process(image)
        for lm in self._landmarks(result, 0.0, 0.0, w, h):
            box = np.concatenate([lm[:, :2].min(0), lm[:, :2].max(0)])
            out.append(FaceDetection(np.clip(box, 0, [w, h, w, h]), lm))
        return out

    def _detect_haar(self, image: np.ndarray) -> list[FaceDetection]:
        cv2 = self._cv2
        if self._cascade is None:
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            self._cascade = cv2.CascadeClassifier(path)
            if self._cascade.empty():
                raise ImportError(f"OpenCV could not load {path}; reinstall it: {_INSTALL}")
        side = max(1, round(self.min_face * min(image.shape[:2])))
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side)
        )
        return [
            FaceDetection(np.array([x, y, x + bw, y + bh], np.float64)) for x, y, bw, bh in found
        ]

    def _mesh_on_crops(self, images: np.ndarray, track: dict[int, FaceDetection]) -> None:
        """Landmarks for a Haar track: the mesh (image mode) on a square around each box."""
        h, w = images.shape[1:3]
        with self._mesh(static=True, max_faces=1) as mesh:
            for f, det in track.items():
                x0, y0, x1, y1 = det.box
                cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
                a0, b0 = max(0, int(cx - half)), max(0, int(cy - half))
                a1, b1 = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
                crop = np.ascontiguousarray(images[f, b0:b1, a0:a1])
                with _native_stderr_quiet():
                    result = mesh.process(crop)
                found = self._landmarks(result, a0, b0, a1 - a0, b1 - b0)
                if found:
                    det.landmarks = found[0]

    def _track(
        self, images: np.ndarray, times: Sequence[float], reset: bool = True
    ) -> tuple[dict[int, FaceDetection], int]:
        """The main speaker's detections (frame index -> detection) and the tracks seen.

        Shape:
            images: (F, H, W, 3) uint8 RGB
        """
        if reset or self._stream is None:
            self.reset()
            self._stream = _Stream(FaceTracker(self.min_iou, self.max_gap))
        stream = self._stream
        h, w = images.shape[1:3]
        dets, ids = [], []
        for image, t in zip(images, times, strict=True):
            if self.detector == "mediapipe":
                found = self._detect_mediapipe(image, stream)
            else:
                found = self._detect_haar(image)
            dets.append(found)
            ids.append(stream.tracker.update(found, float(t), h, w))
        seen = {i for frame_ids in ids for i in frame_ids}
        if not seen:
            return {}, stream.tracker.n_tracks
        # The main speaker: the best-scoring track (over the whole video so far) in this chunk.
        main = max(seen, key=lambda i: stream.tracker.scores[i])
        track = {f: dets[f][fi.index(main)] for f, fi in enumerate(ids) if main in fi}
        if self.detector == "haar":
            self._mesh_on_crops(images, track)
        return track, stream.tracker.n_tracks

    # -- crops and embedding ---------------------------------------------------------

    def crops(self, images: np.ndarray, track: dict[int, FaceDetection]) -> np.ndarray:
        """Aligned crops of the tracked face, in frame order.

        Shape:
            images: (F, H, W, 3) uint8 RGB
            output: (len(track), S, S, 3) uint8, S = crop_size
        """
        cv2, s = self._cv2, self.crop_size
        out = np.zeros((len(track), s, s, 3), dtype=np.uint8)
        for i, f in enumerate(sorted(track)):
            det = track[f]
            if det.landmarks is not None:
                m = align_matrix(det.landmarks, s)
            else:
                m = box_matrix(det.box, s)
            out[i] = cv2.warpAffine(
                images[f], m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        return out

    def embed_crops(self, crops: np.ndarray) -> Tensor:
        """Frozen EfficientNet-Lite0 embeddings of crops (ImageNet-normalised, batched).

        Shape:
            crops: (N, S, S, 3) uint8 RGB
            output: (N, 1280) float32
        """
        from polymodal.data.modality import ModalityKind, ModalitySpec
        from polymodal.data.sample import ModalityBatch
        from polymodal.encoders import build_encoder
        from polymodal.encoders.image import IMAGENET_MEAN, IMAGENET_STD

        if self._encoder is None:
            spec = ModalitySpec(
                "face", ModalityKind.IMAGE, shape=(3, self.crop_size, self.crop_size)
            )
            self._encoder = build_encoder("efficientnet_lite0", spec).eval()
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        parts = [torch.zeros(0, EMBEDDING_DIM)]
        with torch.no_grad():
            for i in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(crops[i : i + self.batch_size]).permute(0, 3, 1, 2)
                x = (x.to(torch.float32) / 255.0 - mean) / std  # (B, 3, S, S)
                present = torch.ones(x.shape[0], dtype=torch.bool)
                parts.append(self._encoder(ModalityBatch(x, present)).pooled.float())
        return torch.cat(parts)

    # -- the whole stage -------------------------------------------------------------

    def __call__(
        self, frames: Tensor, times: Tensor | Sequence[float], reset: bool = True
    ) -> FaceFrames:
        """Run the face stage on a clip's frames (or the next chunk of one, ``reset=False``).

        Shape:
            frames: (F, 3, H, W) float in [0, 1] (or uint8), RGB
            times: (F,) seconds
            output: :class:`FaceFrames` of F frames
        """
        images = _to_images(frames)
        t = _to_times(times, images.shape[0])
        n = images.shape[0]
        present = torch.zeros(n, dtype=torch.bool)
        boxes = torch.zeros(n, 4, dtype=torch.float32)
        embedding = torch.zeros(n, EMBEDDING_DIM if self.embed else 0, dtype=torch.float32)
        geometry = torch.zeros(n, len(GEOMETRY), dtype=torch.float32)
        track, n_tracks = self._track(images, t.tolist(), reset)
        idx = sorted(track)
        for f in idx:
            det = track[f]
            present[f] = True
            boxes[f] = torch.from_numpy(det.box.astype(np.float32))
            if det.landmarks is not None:
                geometry[f] = torch.from_numpy(face_geometry(det.landmarks))
        if self.embed and idx:
            embedding[idx] = self.embed_crops(self.crops(images, track))
        return FaceFrames(t, present, boxes, embedding, geometry, n_tracks)


def _to_images(frames: object) -> np.ndarray:
    """(F, 3, H, W) float [0, 1] or uint8 tensor -> (F, H, W, 3) uint8 contiguous array."""
    if not isinstance(frames, Tensor):
        raise TypeError(
            "The 'frames' parameter must be a torch.Tensor of shape (F, 3, H, W) "
            f"(e.g. decode_video(path).frames); got {type(frames).__name__}."
        )
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2] < 1 or frames.shape[3] < 1:
        raise ValueError(
            "The 'frames' parameter must have shape (F, 3, H, W) (RGB, channels first); "
            f"got {tuple(frames.shape)}."
        )
    x = frames.detach().cpu()
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise TypeError(
                f"The 'frames' parameter must be float in [0, 1] or uint8; got dtype {x.dtype}."
            )
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def _to_times(times: object, n: int) -> Tensor:
    t = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(
            f"The 'times' parameter must have shape (F,) = ({n},), one time per frame; "
            f"got {tuple(t.shape)}."
        )
    return t


__all__ = [
    "DETECTORS",
    "EMBEDDING_DIM",
    "GEOMETRY",
    "FaceAnalyzer",
    "FaceFrames",
    "concat_face_frames",
    "face_geometry",
]
