"""3D face model on the 478-point MediaPipe face-mesh topology.

``load_face_model()`` gives the packaged model (mean shape in ``data/mean_face.npz``, made by
``tools/build_mean_face.py``): identity = a subject's neutral shape [478, 3] (cm), named expression units
[E, 478, 3], gaze [4] (degrees) and a scaled-orthographic camera (``geometry``). ``PCAFaceModel`` reads a user-supplied PCA morphable model (.npz).
"""

from thead.facemodel.expressions import EXPRESSION_NAMES, expression_bounds
from thead.facemodel.geometry import POSE_NAMES, euler_to_matrix, matrix_to_euler, project
from thead.facemodel.model import GAZE_NAMES, FaceModel, load_face_model
from thead.facemodel.pca import PCAFaceModel, load_pca_model

__all__ = [
    "EXPRESSION_NAMES",
    "GAZE_NAMES",
    "POSE_NAMES",
    "FaceModel",
    "PCAFaceModel",
    "euler_to_matrix",
    "expression_bounds",
    "load_face_model",
    "load_pca_model",
    "matrix_to_euler",
    "project",
]
