"""Index sets of the 478-point MediaPipe face mesh (468 surface points + 2 x 5 iris points).

Naming follows the *subject's* side: ``RIGHT_EYE`` is the subject's right eye, which appears on the image's
left in a frontal photo (MediaPipe's own "RIGHT_EYE"). All arrays are int64 index arrays into the 478 points.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

NUM_POINTS = 478
NUM_SURFACE_POINTS = 468

RIGHT_IRIS = np.array([468, 469, 470, 471, 472])  # centre first
LEFT_IRIS = np.array([473, 474, 475, 476, 477])  # centre first
RIGHT_EYE = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246])  # contour loop
LEFT_EYE = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466])
RIGHT_EYE_CORNERS = np.array([33, 133])  # outer, inner
LEFT_EYE_CORNERS = np.array([263, 362])  # outer, inner
RIGHT_EYE_LIDS = np.array([159, 145])  # upper, lower lid centre
LEFT_EYE_LIDS = np.array([386, 374])
RIGHT_BROW = np.array([70, 63, 105, 66, 107, 55, 65, 52, 53, 46])
LEFT_BROW = np.array([300, 293, 334, 296, 336, 285, 295, 282, 283, 276])
LIPS_OUTER = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146])
LIPS_INNER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95])
MOUTH_CORNERS = np.array([61, 291])  # subject's right, left
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                      148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10

# The 68 iBUG/dlib landmarks approximated by face-mesh points (jaw 0-16, brows 17-26, nose 27-35,
# eyes 36-47, mouth 48-67), used for 68-point metrics (AKD, LMD) and to read 68-point backends.
MP_TO_IBUG68 = np.array([
    # jaw 0-16 (subject's right ear -> chin -> left ear)
    127, 234, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 454, 356,
    # right brow 17-21, left brow 22-26
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30, nostrils 31-35
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41, left eye 42-47
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lip 48-59
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lip 60-67
    78, 82, 13, 312, 308, 317, 14, 87,
])
assert MP_TO_IBUG68.shape == (68,)
IBUG68_MOUTH = np.arange(48, 68)
IBUG68_EYES = np.arange(36, 48)


@functools.lru_cache(maxsize=None)
def _topology() -> dict[str, np.ndarray]:
    with resources.files("thead.face").joinpath("data/mesh_topology.npz").open("rb") as fh:
        data = np.load(fh)
        return {k: data[k] for k in data.files}


def mesh_triangles() -> np.ndarray:
    """Triangles (F, 3) int32 of the 468-point surface, rebuilt from MediaPipe's tessellation edges.

    Eyes and the inner mouth are holes (no triangles), so they can be treated as layers of their own.
    Winding is counter-clockwise in image coordinates (y down) for a frontal face.
    """
    return _topology()["triangles"]


def mesh_edges() -> np.ndarray:
    """Tessellation edges (E, 2) int32 of the 468-point surface."""
    return _topology()["edges"]
