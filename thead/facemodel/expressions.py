"""Named expression units of the 478-point face model, built geometrically on the mean shape.

Each unit is a displacement field [478, 3] in model centimetres; a face is ``neutral + sum_e c_e * field_e``.
0 is neutral and 1 a full, natural expression (e.g. ``jaw_open`` = 1 lowers the lower lip by 2.2 cm). Fields are
made by moving a few handle points of a semantic region (mouth corners, lip contours, lids, brows) and spreading
the motion smoothly over the mesh with a biharmonic fill (graph bi-Laplacian on ``topology.mesh_edges()``,
points far from the handles held still). The holes of the mesh (eyes, inner mouth) keep the upper and lower
lids/lips independent. Iris points (468-477) never move with expressions; gaze rotates them.

Units (subject's left/right; left = model +X = image right for a frontal face):

==================  ====================================================================================
jaw_open            lower jaw turns 16 deg about a transverse axis behind the cheeks (lower lip 2.2 cm down)
lips_part           lips separate without the jaw: inner lip contours move apart by 0.7 cm in total
smile_left/right    mouth corner moves up 0.8, out 0.55 and back 0.45 cm; cheek and lower lid rise 0.3 cm
frown               both mouth corners pulled down 0.45 cm and slightly inwards (sad mouth, AU15)
pucker              lips pushed forward 0.6 cm and mouth narrowed by 1.3 cm (kiss, AU18)
lip_stretch         mouth corners pulled sideways 0.5 cm each, lips flattened (AU20)
brow_raise_l/r      brow lifted 0.8 cm with the forehead (AU1+2)
brow_lower          both brows pulled down 0.5 cm and towards the midline (frowning brows, AU4)
blink_left/right    upper lid moved onto the lower lid (1 = closed)
eye_wide            upper lids lifted 0.3 cm, lower lids lowered 0.05 cm (AU5)
chin_raise          chin and lower lip pushed up 0.3 cm and forward 0.2 cm, upper lip a little up (pout, AU17)
==================  ====================================================================================

Bounds: all units lie in [0, 1] except ``lips_part`` in [-0.3, 1] (negative: lips pressed/rolled in, as in
m/b/p) and ``jaw_open`` in [-0.1, 1] (negative: a jaw a little more closed than the mean face's).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import shortest_path

from thead.face import topology as topo

EXPRESSION_NAMES: tuple[str, ...] = (
    "jaw_open", "lips_part", "smile_left", "smile_right", "frown", "pucker", "lip_stretch",
    "brow_raise_left", "brow_raise_right", "brow_lower", "blink_left", "blink_right", "eye_wide",
    "chin_raise",
)
# The units that shape the mouth's opening (speech moves these; the smile and frown units are left to the face).
MOUTH_UNITS: tuple[str, ...] = ("jaw_open", "lips_part", "pucker", "lip_stretch", "chin_raise")
EXPRESSION_LOWER = {"lips_part": -0.3, "jaw_open": -0.1}
EXPRESSION_UPPER: dict[str, float] = {}

JAW_ANGLE_DEG = 16.0
N = topo.NUM_SURFACE_POINTS


def expression_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds [E] of the expression coefficients."""
    lo = np.array([EXPRESSION_LOWER.get(n, 0.0) for n in EXPRESSION_NAMES], np.float32)
    hi = np.array([EXPRESSION_UPPER.get(n, 1.0) for n in EXPRESSION_NAMES], np.float32)
    return lo, hi


class MeshOperators:
    """Graph operators of the 468-point surface, weighted by inverse edge length on a shape [478, 3]."""

    def __init__(self, shape: np.ndarray) -> None:
        edges = topo.mesh_edges().astype(np.int64)
        length = np.linalg.norm(shape[edges[:, 0]] - shape[edges[:, 1]], axis=1)
        w = 1.0 / np.maximum(length, 1e-3)
        w = w / w.mean()
        adj = sp.coo_matrix((np.r_[w, w], (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                            shape=(N, N)).tocsr()
        self.degree = np.asarray(adj.sum(1)).ravel()
        self.laplacian = (sp.diags(self.degree) - adj).tocsr()
        self.bilaplacian = (self.laplacian.T @ sp.diags(1.0 / self.degree) @ self.laplacian).tocsr()
        hops = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(N, N))
        self._hops = (hops + hops.T).tocsr()
        self.shape = shape

    def hop_distance(self, sources: np.ndarray) -> np.ndarray:
        """Edge-count distance [468] of each surface point to the nearest of ``sources``."""
        return shortest_path(self._hops, unweighted=True, indices=np.asarray(sources)).min(0)

    def fill(self, values: dict[int, np.ndarray] | tuple[np.ndarray, np.ndarray], fixed: np.ndarray,
             harmonic: bool = False) -> np.ndarray:
        """Smooth field [468, C] with prescribed values at handle points and zero at ``fixed`` points.

        values: {index: value [C]} or (indices [H], values [H, C]); biharmonic fill unless ``harmonic``.
        """
        if isinstance(values, dict):
            idx = np.array(list(values.keys()), np.int64)
            val = np.stack([np.atleast_1d(np.asarray(v, np.float64)) for v in values.values()])
        else:
            idx, val = np.asarray(values[0], np.int64), np.asarray(values[1], np.float64)
            val = val.reshape(len(idx), -1)
        fixed = np.setdiff1d(np.asarray(fixed, np.int64), idx)
        known = np.r_[idx, fixed]
        known_val = np.r_[val, np.zeros((len(fixed), val.shape[1]))]
        free = np.setdiff1d(np.arange(N), known)
        op = self.laplacian if harmonic else self.bilaplacian
        out = np.zeros((N, val.shape[1]))
        out[known] = known_val
        rhs = -op[free][:, known] @ known_val
        out[free] = spla.spsolve(op[free][:, free].tocsc(), rhs).reshape(len(free), -1)
        return out


def _lip_parts(ops: MeshOperators) -> dict[str, np.ndarray]:
    """Upper/lower lip points per ring (ring 0 = inner contour ... ring 3 = outer contour) and the corners."""
    shape = ops.shape
    dist = ops.hop_distance(topo.LIPS_INNER)
    inner = list(topo.LIPS_INNER)
    i_r, i_l = inner.index(78), inner.index(308)
    parts: dict[str, np.ndarray] = {
        "upper0": np.array(inner[i_r + 1:i_l]), "lower0": np.array(inner[i_l + 1:]),
        "corners0": np.array([78, 308]),
    }
    for ring in (1, 2, 3):
        pts = np.flatnonzero(dist == ring)
        corners = pts[np.argsort(np.abs(shape[pts, 0]))[-2:]]
        corners = corners[np.argsort(shape[corners, 0])]
        rest = np.setdiff1d(pts, corners)
        line = np.interp(shape[rest, 0], shape[corners, 0], shape[corners, 1])
        parts[f"upper{ring}"] = rest[shape[rest, 1] < line]
        parts[f"lower{ring}"] = rest[shape[rest, 1] >= line]
        parts[f"corners{ring}"] = corners
    parts["upper"] = np.concatenate([parts[f"upper{r}"] for r in range(4)])
    parts["lower"] = np.concatenate([parts[f"lower{r}"] for r in range(4)])
    parts["corners"] = np.concatenate([parts[f"corners{r}"] for r in range(4)])
    parts["all"] = np.flatnonzero(dist <= 3)
    return parts


def _far_from(shape: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Surface points farther than ``radius`` cm from any of the points ``centre`` [K, 3]."""
    d = np.linalg.norm(shape[:N, None] - np.atleast_2d(centre)[None], axis=-1).min(1)
    return np.flatnonzero(d > radius)


def eye_lids(side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper lid [7], lower lid [7] paired point by point, corners [2]) of one eye contour."""
    loop = topo.LEFT_EYE if side == "left" else topo.RIGHT_EYE
    lower = loop[1:8]
    upper = loop[9:16][::-1]
    return upper, lower, loop[[0, 8]]


def _mirror_field(field: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    out = field[mirror].copy()
    out[:, 0] *= -1
    return out


def jaw_weights(ops: MeshOperators, lips: dict[str, np.ndarray]) -> np.ndarray:
    """How much each surface point follows the lower jaw [468], 0..1 (harmonic between lower and upper face)."""
    shape = ops.shape
    oval = topo.FACE_OVAL
    corner_y = shape[topo.MOUTH_CORNERS, 1].mean()
    below = oval[shape[oval, 1] > corner_y + 0.3]
    moving = np.unique(np.r_[lips["lower"], below, topo.CHIN])
    upper_face = np.flatnonzero(shape[:N, 1] < shape[topo.NOSE_TIP, 1] + 0.6)
    still = np.unique(np.r_[lips["upper"], upper_face])
    w = ops.fill((moving, np.ones(len(moving))), still, harmonic=True)[:, 0]
    return np.clip(w, 0.0, 1.0)


def build_expression_fields(shape: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Displacement fields [E, 478, 3] (cm) of ``EXPRESSION_NAMES`` on the mean shape [478, 3]."""
    shape = np.asarray(shape, np.float64)
    ops = MeshOperators(shape)
    lips = _lip_parts(ops)
    fields: dict[str, np.ndarray] = {}
    mouth_centre = shape[np.r_[topo.LIPS_OUTER]].mean(0)
    nose = np.flatnonzero(ops.hop_distance([topo.NOSE_TIP]) <= 2)
    eyes = np.r_[topo.LEFT_EYE, topo.RIGHT_EYE]

    # jaw_open: rotation of the jaw about the X axis through the jaw joints, blended by the jaw weight.
    pivot = np.array([0.0, shape[topo.MOUTH_CORNERS, 1].mean() - 1.0, shape[topo.FACE_OVAL, 2].max() + 1.0])
    a = np.radians(JAW_ANGLE_DEG)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rel = shape[:N] - pivot
    w = jaw_weights(ops, lips)
    fields["jaw_open"] = w[:, None] * (rel @ rot.T - rel)

    # lips_part: inner contours apart by 0.35 cm each, fading to 0.1 cm at the outer contour.
    part = {}
    for ring, amount in zip(range(4), (0.35, 0.15, 0.05, 0.0)):
        for i in lips[f"upper{ring}"]:
            taper = 1.0 - 0.6 * (abs(shape[i, 0]) / abs(shape[lips[f"corners{ring}"], 0]).max()) ** 2
            part[int(i)] = np.array([0.0, -amount * taper, 0.0])
        for i in lips[f"lower{ring}"]:
            taper = 1.0 - 0.6 * (abs(shape[i, 0]) / abs(shape[lips[f"corners{ring}"], 0]).max()) ** 2
            part[int(i)] = np.array([0.0, amount * taper, 0.0])
    for i in lips["corners"]:
        part[int(i)] = np.zeros(3)
    fields["lips_part"] = ops.fill(part, np.r_[_far_from(shape, mouth_centre, 3.5), nose])

    # smile_left: the subject's left corner (model +X) up, out and back; the other corner still.
    left = lips["corners"][shape[lips["corners"], 0] > 0]
    right = lips["corners"][shape[lips["corners"], 0] < 0]
    smile = {int(i): np.array([0.55, -0.8, 0.45]) for i in left}
    smile.update({int(i): np.zeros(3) for i in right})
    cheek = shape[topo.LEFT_EYE_LIDS[1]] + np.array([0.0, 0.5, 0.0])
    lower_lid = topo.LEFT_EYE[1:8]
    smile.update({int(i): np.array([0.0, -0.3, 0.0]) for i in lower_lid})
    still = np.r_[_far_from(shape, np.stack([shape[291], cheek]), 3.2), topo.LEFT_EYE[9:16], nose,
                  topo.LIPS_OUTER[[5, 15]], topo.LIPS_INNER[[5, 15]]]
    fields["smile_left"] = ops.fill(smile, still)
    fields["smile_right"] = _mirror_field(np.r_[fields["smile_left"], np.zeros((10, 3))], mirror)[:N]

    # frown: both corners down and slightly in.
    frown = {int(i): np.array([-0.1 * np.sign(shape[i, 0]), 0.45, 0.0]) for i in lips["corners"]}
    fields["frown"] = ops.fill(frown, np.r_[_far_from(shape, shape[topo.MOUTH_CORNERS], 3.0), nose,
                                            topo.LIPS_OUTER[[5]], topo.LIPS_INNER[[5]]])

    # pucker: all lip rings forward and drawn towards the midline.
    half_width = abs(shape[topo.MOUTH_CORNERS, 0]).max()
    pucker = {}
    for i in lips["all"]:
        pucker[int(i)] = np.array([-0.65 / half_width * shape[i, 0], 0.0, -0.6])
    fields["pucker"] = ops.fill(pucker, np.r_[_far_from(shape, mouth_centre, 3.8), nose])

    # lip_stretch: corners sideways, lips pulled flat (upper lip down, lower lip up a little).
    stretch = {}
    for i in lips["all"]:
        frac = shape[i, 0] / half_width
        dy = 0.0
        if i in set(lips["upper"]):
            dy = 0.08 * (1 - frac ** 2)
        elif i in set(lips["lower"]):
            dy = -0.12 * (1 - frac ** 2)
        stretch[int(i)] = np.array([0.5 * frac, dy, 0.1 * abs(frac)])
    fields["lip_stretch"] = ops.fill(stretch, np.r_[_far_from(shape, mouth_centre, 3.8), nose])

    # brow_raise_left: brow up with the forehead; eyes and the other brow still.
    brow_still = np.r_[eyes, topo.RIGHT_BROW, nose, np.flatnonzero(shape[:N, 1] > shape[topo.NOSE_TIP, 1] - 2.0)]
    raise_ = {int(i): np.array([0.0, -0.8, 0.0]) for i in topo.LEFT_BROW}
    midline = np.flatnonzero(np.abs(shape[:N, 0]) < 1e-6)
    fields["brow_raise_left"] = ops.fill(raise_, np.r_[brow_still, _far_from(shape, shape[topo.LEFT_BROW], 4.0),
                                                         midline[shape[midline, 1] > -6.0]])
    fields["brow_raise_right"] = _mirror_field(np.r_[fields["brow_raise_left"], np.zeros((10, 3))], mirror)[:N]

    # brow_lower: brows down and towards the midline, the inner ends most.
    lower = {}
    for i in np.r_[topo.LEFT_BROW, topo.RIGHT_BROW]:
        inner = np.clip(1.0 - (abs(shape[i, 0]) - 1.2) / 4.5, 0.3, 1.0)
        lower[int(i)] = np.array([-0.35 * inner * np.sign(shape[i, 0]), 0.5 * (0.6 + 0.4 * inner), 0.0])
    fields["brow_lower"] = ops.fill(lower, np.r_[eyes, nose, np.flatnonzero(shape[:N, 1] > shape[topo.NOSE_TIP, 1]
                                                                              - 2.0)])

    # blink_left: upper lid onto the lower lid (they meet 85 % of the way down), corners still.
    up, low, corners = eye_lids("left")
    gap = shape[low] - shape[up]
    blink = {int(i): 0.85 * g for i, g in zip(up, gap)}
    blink.update({int(i): -0.15 * g for i, g in zip(low, gap)})
    blink.update({int(i): np.zeros(3) for i in corners})
    eye_centre = shape[topo.LEFT_EYE].mean(0)
    fields["blink_left"] = ops.fill(blink, np.r_[topo.LEFT_BROW, _far_from(shape, eye_centre[None], 2.6)])
    fields["blink_right"] = _mirror_field(np.r_[fields["blink_left"], np.zeros((10, 3))], mirror)[:N]

    # eye_wide: both upper lids up, lower lids slightly down.
    wide = {}
    for side in ("left", "right"):
        up, low, corners = eye_lids(side)
        loop = topo.LEFT_EYE if side == "left" else topo.RIGHT_EYE
        span = np.ptp(shape[loop, 0])
        centre_x = shape[loop, 0].mean()
        for i in up:
            wide[int(i)] = np.array([0.0, -0.3 * (1 - (2 * (shape[i, 0] - centre_x) / span) ** 2), 0.0])
        for i in low:
            wide[int(i)] = np.array([0.0, 0.05 * (1 - (2 * (shape[i, 0] - centre_x) / span) ** 2), 0.0])
        wide.update({int(i): np.zeros(3) for i in corners})
    fields["eye_wide"] = ops.fill(wide, np.r_[topo.LEFT_BROW, topo.RIGHT_BROW,
                                              _far_from(shape, shape[eyes], 1.8)])

    # chin_raise: lower lip and chin up and forward; the upper lip is pushed up a little.
    chin = {}
    for i in lips["lower"]:
        chin[int(i)] = np.array([0.0, -0.3, -0.2]) * (1.0 - 0.5 * (shape[i, 0] / half_width) ** 2)
    for i in lips["upper"]:
        chin[int(i)] = np.array([0.0, -0.1, -0.05]) * (1.0 - 0.5 * (shape[i, 0] / half_width) ** 2)
    for i in lips["corners"]:
        chin[int(i)] = np.array([0.0, 0.0, 0.0])
    chin[topo.CHIN] = np.array([0.0, -0.25, -0.15])
    fields["chin_raise"] = ops.fill(chin, np.r_[_far_from(shape, shape[[17, topo.CHIN]], 4.0), nose,
                                                topo.FACE_OVAL[np.abs(shape[topo.FACE_OVAL, 0]) > 2.5]])

    out = np.zeros((len(EXPRESSION_NAMES), topo.NUM_POINTS, 3), np.float32)
    for k, name in enumerate(EXPRESSION_NAMES):
        out[k, :N] = fields[name]
    return out
