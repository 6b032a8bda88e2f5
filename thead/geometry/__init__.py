"""Plane and space geometry shared by every stage, in one pixel convention.

Pixels are continuous coordinates, x right and y down: pixel (row i, column j) covers ``[j, j + 1) x [i, i + 1)``,
its centre at ``(j + 0.5, i + 0.5)`` (MediaPipe's and ``grid_sample(align_corners=False)``'s convention). OpenCV's
integer-centred coordinates are converted at the OpenCV call only (:meth:`Affine2D.to_opencv` / ``from_opencv``).

    affine     Affine2D: 2-D affine / similarity maps (crops, alignments), one or a batch per frame
    boxes      landmark_box, box_iou
    rotation   3-D head rotations (Euler angles <-> matrices, fractional turns) and the pose camera (torch; import
               ``thead.geometry.rotation`` explicitly, so numpy-only users do not load torch)
"""

from thead.geometry.affine import Affine2D
from thead.geometry.boxes import box_iou, landmark_box

__all__ = ["Affine2D", "box_iou", "landmark_box"]
