"""Expression geometry and crop alignment from MediaPipe's 478 face-mesh landmarks.

Part of the face stage (:mod:`polymodal.featurize.face`).  Landmarks are pixel coordinates
``(x, y, z)`` with image y pointing down and z (the mesh's relative depth) in the x scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

GEOMETRY = ("mouth_open", "mouth_width", "smile", "brow_raise", "eye_open", "yaw", "pitch", "roll")
EYE_SPAN = 0.32  # inter-ocular distance in an aligned crop, as a fraction of its side
EYE_ROW = 0.36  # height of the eyes in an aligned crop, as a fraction of its side


# MediaPipe face-mesh indices.  "Right"/"left" are the subject's: the subject's right eye is
# on the image's left in an unmirrored frontal view.
_R_EYE_CORNERS, _L_EYE_CORNERS = (33, 133), (362, 263)
_R_LIDS, _L_LIDS = (159, 145), (386, 374)  # (upper, lower)
_R_BROW, _L_BROW = (70, 63, 105, 66, 107), (300, 293, 334, 296, 336)
_MOUTH_CORNERS = (61, 291)
_LIP_UPPER, _LIP_LOWER = 13, 14  # inner edges of the lips at the midline
_FOREHEAD, _CHIN = 10, 152


def _eyes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-D centres (eye-corner midpoints) of the subject's right and left eye."""
    right = lm[list(_R_EYE_CORNERS)].mean(0)
    left = lm[list(_L_EYE_CORNERS)].mean(0)
    return right, left


def face_geometry(landmarks: np.ndarray) -> np.ndarray:
    """Expression geometry of one face from its 478 face-mesh landmarks.

    Landmarks are rotated about the eye midpoint so the eye line is level and divided by
    the inter-ocular distance (IOD, between the eye-corner midpoints); image y points down.

    * ``mouth_open``: inner upper to inner lower lip at the midline (13-14) / IOD.
    * ``mouth_width``: mouth corner to mouth corner (61-291) / IOD.
    * ``smile``: height of the inner upper lip's midpoint (13) minus the mean height of the
      mouth corners, / IOD: positive when the corners rise.  The upper lip, not the centre
      between both lips, so that opening the jaw does not read as a smile.
    * ``brow_raise``: eye centre height minus mean brow height (five points on each brow's
      upper edge), mean of both sides, / IOD.
    * ``eye_open``: upper to lower lid (159-145, 386-374), mean of both eyes, / IOD.
    * ``yaw``, ``pitch``, ``roll`` (radians): head pose from the mesh's own 3-D landmarks
      (MediaPipe predicts a per-face depth z in the x scale).  The face's x axis runs from
      the right to the left eye centre, its y axis from forehead (10) to chin (152) made
      orthogonal to x; yaw = atan2(x_z, x_x) (positive when the subject's left eye is
      farther from the camera), pitch = atan2(y_z, y_y) (positive when the chin is farther
      from the camera than the forehead: the head bowed), roll = atan2(x_y, x_x) (positive when the eye line descends
      to the image's right).  A mirrored frame flips the signs of yaw and roll.  Chosen over
      the nose-tip offset and over ``cv2.solvePnP`` with a six-point generic model: on the
      11 GRID clips at 5 fps, |yaw + yaw of the mirrored frame| averaged 1.4 degrees
      (nose offset 2.5, solvePnP 6.8), halving the resolution moved yaw by 0.2 degrees
      (0.4, 2.4) and the within-clip spread of a still speaker was 0.6 degrees (1.0, 5.6).

    Shape:
        landmarks: (478, 3) pixels (x, y, z), or (468, 3)
        output: (len(GEOMETRY),) float32
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] != 3:
        raise ValueError(
            "The 'landmarks' parameter must be an (478, 3) array of face-mesh points (x, y, z); "
            f"got shape {tuple(lm.shape)}."
        )
    right, left = _eyes(lm)
    d = left[:2] - right[:2]
    iod = float(np.hypot(d[0], d[1]))
    if not iod > 0:
        return np.zeros(len(GEOMETRY), dtype=np.float32)
    roll = math.atan2(d[1], d[0])
    c, s = math.cos(roll), math.sin(roll)
    unroll = np.array([[c, s], [-s, c]])  # rotates the eye line onto +x
    q = (lm[:, :2] - (left[:2] + right[:2]) / 2) @ unroll.T / iod  # (478, 2), IOD = 1

    def y(idx: Sequence[int] | int) -> float:
        return float(np.mean(q[idx, 1]))

    mouth_open = float(np.linalg.norm(q[_LIP_UPPER] - q[_LIP_LOWER]))
    mouth_width = float(np.linalg.norm(q[_MOUTH_CORNERS[0]] - q[_MOUTH_CORNERS[1]]))
    smile = y(_LIP_UPPER) - y(list(_MOUTH_CORNERS))
    brow_raise = (
        y(list(_R_EYE_CORNERS)) - y(list(_R_BROW)) + y(list(_L_EYE_CORNERS)) - y(list(_L_BROW))
    ) / 2
    eye_open = (
        float(np.linalg.norm(q[_R_LIDS[0]] - q[_R_LIDS[1]]))
        + float(np.linalg.norm(q[_L_LIDS[0]] - q[_L_LIDS[1]]))
    ) / 2
    x_axis = (left - right) / np.linalg.norm(left - right)
    y_axis = lm[_CHIN] - lm[_FOREHEAD]
    y_axis = y_axis - (y_axis @ x_axis) * x_axis
    y_norm = float(np.linalg.norm(y_axis))
    y_axis = y_axis / y_norm if y_norm > 0 else np.array([0.0, 1.0, 0.0])
    yaw = math.atan2(x_axis[2], x_axis[0])
    pitch = math.atan2(y_axis[2], y_axis[1])
    values = (mouth_open, mouth_width, smile, brow_raise, eye_open, yaw, pitch, roll)
    return np.asarray(values, dtype=np.float32)


def align_matrix(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """The 2x3 affine map from frame pixels to an aligned ``crop_size`` square.

    Rotates about the eye midpoint so the eye line is level, scales the inter-ocular
    distance to ``EYE_SPAN * crop_size`` and puts the eye midpoint at
    ``(crop_size / 2, EYE_ROW * crop_size)``.

    Shape:
        landmarks: (N, 2 or 3) pixels with the face-mesh eye corners
        output: (2, 3) float64
    """
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    right, left = _eyes(lm)
    d = left - right
    scale = EYE_SPAN * crop_size / max(float(np.hypot(d[0], d[1])), 1e-6)
    roll = math.atan2(d[1], d[0])
    c, s = scale * math.cos(roll), scale * math.sin(roll)
    rot = np.array([[c, s], [-s, c]])
    mid = (left + right) / 2
    shift = np.array([crop_size / 2, EYE_ROW * crop_size]) - rot @ mid
    return np.concatenate([rot, shift[:, None]], axis=1)


def box_matrix(box: np.ndarray, crop_size: int) -> np.ndarray:
    """The 2x3 affine map of a square 1.1 times a detector box's longer side onto the crop.

    The fallback for a face without landmarks (a Haar box where the mesh found nothing).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = 1.1 * max(x1 - x0, y1 - y0, 1.0)
    scale = crop_size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array(
        [[scale, 0.0, crop_size / 2 - scale * cx], [0.0, scale, crop_size / 2 - scale * cy]]
    )
