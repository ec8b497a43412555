"""Face boxes: MediaPipe's short-range BlazeFace detector, run through :class:`~pipeline.models.ConvGraph`.

The network looks at a 128 x 128 letterboxed copy of the photo and scores 896 anchors (a 16 x 16 grid with 2
anchors a cell and an 8 x 8 grid with 6); each anchor regresses a box and six key points (both eyes, nose tip,
mouth centre, both ear tragions). Overlapping boxes are merged by score-weighted averaging, as MediaPipe does.
Faces too small for one look at the whole photo are searched again in overlapping tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..models.conv_graph import ConvGraph

#: Anchors whose score passes this are faces.
MIN_SCORE = 0.5
#: Boxes overlapping more than this (intersection over union) are one face.
MERGE_IOU = 0.3


@dataclass
class FaceBox:
    """A detected face in image pixels: ``box`` (left, top, right, bottom), ``keypoints`` (6, 2) ordered
    subject's right eye, left eye, nose tip, mouth centre, right ear, left ear, and the detector's score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


@lru_cache(maxsize=1)
def _anchors() -> np.ndarray:
    """Anchor centres ``(896, 2)`` in [0, 1] (SSD anchors of MediaPipe's short-range face detector)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    left = np.maximum(box[0], boxes[:, 0])
    top = np.maximum(box[1], boxes[:, 1])
    right = np.minimum(box[2], boxes[:, 2])
    bottom = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def merge_overlapping(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray) -> list[FaceBox]:
    """Weighted non-maximum suppression: each cluster of overlapping boxes becomes their score-weighted mean."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    faces: list[FaceBox] = []
    remaining = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (_iou(boxes[i], boxes) > MERGE_IOU)
        cluster[i] = True
        weights = scores[cluster] / scores[cluster].sum()
        faces.append(FaceBox(box=(boxes[cluster] * weights[:, None]).sum(0),
                             keypoints=(keypoints[cluster] * weights[:, None, None]).sum(0),
                             score=float(scores[i])))
        remaining &= ~cluster
    return faces


class FaceBoxDetector:
    """Finds face boxes with key points in RGB images of any size."""

    def __init__(self, model: ConvGraph) -> None:
        self.model = model.eval()
        self.size = int(model.config.input_size)

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """The image fitted into the square input (padded with black), the scale and the offset of the image in it."""
        import cv2

        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        square = np.zeros((self.size, self.size, 3), np.uint8)
        offset = np.array([(self.size - new_w) // 2, (self.size - new_h) // 2])
        square[offset[1] : offset[1] + new_h, offset[0] : offset[0] + new_w] = small
        return square, scale, offset

    @torch.no_grad()
    def _detect_squares(self, squares: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw boxes ``(N, 896, 4)``, key points ``(N, 896, 6, 2)`` (input pixels) and scores ``(N, 896)``."""
        low, high = self.model.config.input_range
        batch = torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).float() * ((high - low) / 255.0) + low
        regressors, logits = self.model(batch)  # (N, 896, 16), (N, 896, 1)
        raw = regressors.numpy().astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.numpy()[..., 0].astype(np.float64), -100, 100)))
        centres = _anchors() * self.size
        cx, cy = raw[..., 0] + centres[:, 0], raw[..., 1] + centres[:, 1]
        half_w, half_h = raw[..., 2] / 2, raw[..., 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
        keypoints = raw[..., 4:].reshape(*raw.shape[:2], 6, 2) + centres[:, None, :]
        return boxes, keypoints, scores

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """All faces in ``rgb`` ``(H, W, 3)`` uint8, best first; tiles are searched when the whole image has none."""
        faces = self._detect_in([(rgb, np.zeros(2))])
        if not faces:
            faces = self._detect_in(_tiles(rgb))
        return sorted(faces, key=lambda f: -f.score)

    def _detect_in(self, views: list[tuple[np.ndarray, np.ndarray]]) -> list[FaceBox]:
        if not views:
            return []
        prepared = [self._letterbox(view) for view, _ in views]
        boxes, keypoints, scores = self._detect_squares([square for square, _, _ in prepared])
        all_boxes, all_points, all_scores = [], [], []
        for (_square, scale, offset), (_, origin), b, k, s in zip(prepared, views, boxes, keypoints, scores,
                                                                   strict=True):
            keep = s >= MIN_SCORE
            all_boxes.append((b[keep] - np.tile(offset, 2)) / scale + np.tile(origin, 2))
            all_points.append((k[keep] - offset) / scale + origin)
            all_scores.append(s[keep])
        scores_all = np.concatenate(all_scores)
        if not len(scores_all):
            return []
        return merge_overlapping(np.concatenate(all_boxes), np.concatenate(all_points), scores_all)


def _tiles(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Overlapping square views (with their top-left corners) at half the image's longer side, for small faces."""
    h, w = rgb.shape[:2]
    side = max(1, min(max(h, w) // 2, min(h, w)))
    if side == max(h, w):
        return []
    xs = np.unique(np.linspace(0, w - side, max(2, round(2 * w / side) - 1)).astype(int))
    ys = np.unique(np.linspace(0, h - side, max(2, round(2 * h / side) - 1)).astype(int))
    return [(rgb[y : y + side, x : x + side], np.array([x, y], dtype=np.float64)) for y in ys for x in xs]
