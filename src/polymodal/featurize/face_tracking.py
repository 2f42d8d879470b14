"""Face tracks: link per-frame detections by box overlap and score the main speaker.

Part of the face stage (:mod:`polymodal.featurize.face`).  :class:`FaceTracker` keeps its
tracks between calls, so a long video analysed in chunks keeps one track per face.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class FaceDetection:
    """One face found in one frame: its box and, when known, its face-mesh landmarks.

    Attributes:
        box: (4,) ``(x0, y0, x1, y1)`` pixels.
        landmarks: (478, 3) pixels ``(x, y, z)`` (z in the x scale), or ``None``.
    """

    box: np.ndarray
    landmarks: np.ndarray | None = None


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def speaker_score(box: np.ndarray, height: int, width: int) -> float:
    """How much a box looks like the main speaker: area fraction x centrality.

    Centrality is 1 at the frame's centre and 0 at a corner.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0) / (width * height)
    off = math.hypot((x0 + x1) / 2 - width / 2, (y0 + y1) / 2 - height / 2)
    return area * max(0.0, 1.0 - off / (math.hypot(width, height) / 2))


class FaceTracker:
    """Chains detections frame to frame by box overlap (greedy, best IoU first).

    A detection joins the track whose last box overlaps it most (IoU >= ``min_iou``) among
    the tracks last seen at most ``max_gap`` seconds earlier; otherwise it starts a new
    track.  Each track accumulates :func:`speaker_score` over its frames: the main speaker
    is the track with the largest total (the largest, most central face, seen longest).

    Args:
        min_iou: overlap needed to continue a track.
        max_gap: longest gap (seconds) a track bridges.
    """

    def __init__(self, min_iou: float = 0.3, max_gap: float = 1.0) -> None:
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.scores: list[float] = []  # per track, summed over its frames
        self._last_box: list[np.ndarray] = []
        self._last_time: list[float] = []

    @property
    def n_tracks(self) -> int:
        """Tracks started so far."""
        return len(self.scores)

    def update(
        self, detections: Sequence[FaceDetection], time: float, height: int, width: int
    ) -> list[int]:
        """Add one frame's detections (frame size ``height`` x ``width``); their track ids."""
        pairs = []
        for ti, last in enumerate(self._last_box):
            if time - self._last_time[ti] > self.max_gap + 1e-9:
                continue
            for di, det in enumerate(detections):
                iou = box_iou(last, det.box)
                if iou >= self.min_iou:
                    pairs.append((-iou, ti, di))
        ids = [-1] * len(detections)
        used: set[int] = set()
        for _, ti, di in sorted(pairs):
            if ti not in used and ids[di] < 0:
                ids[di] = ti
                used.add(ti)
        for di, det in enumerate(detections):
            if ids[di] < 0:
                ids[di] = self.n_tracks
                self.scores.append(0.0)
                self._last_box.append(det.box)
                self._last_time.append(time)
            ti = ids[di]
            self.scores[ti] += speaker_score(det.box, height, width)
            self._last_box[ti] = det.box
            self._last_time[ti] = time
        return ids
