"""Correct the outer-lip contour of a face mesh towards the lips' vermilion border as the mouth opens.

MediaPipe's outer-lip contour (``LIPS_OUTER``) fits a closed mouth's vermilion border tightly, but on an open mouth
it lies outside the border (skin inside the contour), most beside the corners. Measured along the contour's normals
by lip-against-skin colour in every frame of the four shared clips (d0, d3, d12, WDA; opening 0 to 0.35), the
contour beside the corners moves out from the border by 4-9 % of the eye width per unit of mouth opening (inner-lip
gap over eye width) in three or four of the clips, up to twice that in d3's wide-open frames; over the middle of the
lips the clips disagree (WDA's upper lip -6 %, d3's lower lip +10 to +20 %), and the pooled slope there is small.
A mesh warp that maps a source's contour onto a target's then carries skin into the target's lips when the source's
mouth is open and the target's is not (the rendered lips thinner and shorter at the corners than the target mesh
says), and lip into the skin the other way round.

``lip_border_vertices`` moves the contour's vertices along their inward normals by that measured amount, a function
of the mesh's own mouth opening only, and the two rings of lip vertices between the outer and the inner contour
by their share of it (the lips' band is squeezed, never folded: near an open mouth's corners the move is nearly half
the band's width). Applied alike to the source vertices a warp samples from and the target
vertices it draws to, an identity target still maps every source pixel onto itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from thead.face.topology import LIPS_INNER, LIPS_OUTER, NUM_SURFACE_POINTS

# Per ``LIPS_OUTER`` vertex (61, 185, 40, ..., 291, 375, ..., 146): the vermilion border's offset from the contour
# along the contour's outward normal, in eye widths per unit of opening above ``REST_OPENING`` (negative: the border
# lies inside the contour). Theil-Sen slopes pooled over the four shared clips (each clip's closed-mouth median
# offset subtracted, left and right mirrored together; ``tools/measure_lip_border.py``), rounded to a quarter of a
# per cent. Measurement noise: about 1 % (half a pixel's change of the colour sampling masks moves them that much).
LIP_BORDER_SLOPE = np.array([-3.75, -2.25, -3.75, -2.25, -2.25, -1.5, -2.25, -2.25, -3.75, -2.25,
                             -3.75, -7.75, -8.5, -1.25, 2.5, -1.5, 2.5, -1.25, -8.5, -7.75]) / 100.0
REST_OPENING = 0.05  # inner-lip gap over eye width below which the contour fits the border (closed lips)
_EYE_CORNERS = (33, 263)  # outer eye corners: the face's scale
_INNER_MID = (13, 14)  # middle of the upper and lower inner lip


@lru_cache(maxsize=1)
def lip_band() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lip vertices between the outer and the inner contour, each with the outer-inner contour pair it lies on.

    Returns
    -------
    ids : np.ndarray
        int64 [K] (K = 40 in the MediaPipe topology): the surface points inside ``LIPS_OUTER`` on the mean face,
        neither outer nor inner contour points.
    pair : np.ndarray
        int64 [K]: the index into ``LIPS_OUTER`` / ``LIPS_INNER`` of the nearest segment from an inner contour point
        to its outer partner, on the mean face.
    share : np.ndarray
        float32 [K] in [0, 1]: where along that segment the point lies (0 at the inner point, 1 at the outer).
    """
    from matplotlib.path import Path

    from thead.facemodel import load_face_model

    mean = load_face_model().mean_shape[:NUM_SURFACE_POINTS, :2].astype(np.float64)
    inside = Path(mean[LIPS_OUTER]).contains_points(mean)
    ids = np.setdiff1d(np.nonzero(inside)[0], np.r_[LIPS_OUTER, LIPS_INNER])
    a, b = mean[LIPS_INNER], mean[LIPS_OUTER]  # [20, 2] segment ends
    ab = b - a
    p = mean[ids][:, None]  # [K, 1, 2]
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)  # [K, 20]
    dist = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
    pair = dist.argmin(1)
    return ids.astype(np.int64), pair.astype(np.int64), t[np.arange(len(ids)), pair].astype(np.float32)


def mouth_opening(vertices: torch.Tensor) -> torch.Tensor:
    """The inner-lip gap over the eye width.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, 2+] face mesh, pixels.

    Returns
    -------
    torch.Tensor
        [B] dimensionless (0 for closed lips, about 0.3 for a wide-open mouth).
    """
    xy = vertices[..., :2]
    eye = (xy[:, _EYE_CORNERS[0]] - xy[:, _EYE_CORNERS[1]]).norm(dim=-1).clamp(min=1e-3)
    return (xy[:, _INNER_MID[0]] - xy[:, _INNER_MID[1]]).norm(dim=-1) / eye


def lip_border_vertices(vertices: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """The mesh with its outer-lip contour moved onto the vermilion border its mouth opening predicts.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, C] face mesh, C >= 2: pixels x, y (then depth, unchanged).
    gain : float
        Scale of ``LIP_BORDER_SLOPE`` (0: the vertices unchanged).

    Returns
    -------
    torch.Tensor
        [B, 478, C]: a new tensor, the ``LIPS_OUTER`` vertices moved along their normals by
        ``gain * LIP_BORDER_SLOPE * eye width * max(opening - REST_OPENING, 0)`` pixels (outward positive), the
        ``lip_band`` vertices by their share of their contour pair's move; every other vertex as given. The same
        function of each mesh alone, so equal meshes stay equal.
    """
    if gain == 0.0:
        return vertices
    dev, dt = vertices.device, vertices.dtype
    idx = torch.as_tensor(LIPS_OUTER, device=dev)
    xy = vertices[..., :2]
    loop = xy[:, idx]  # [B, 20, 2]
    tangent = torch.roll(loop, -1, 1) - torch.roll(loop, 1, 1)
    normal = torch.stack([tangent[..., 1], -tangent[..., 0]], -1)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    outward = torch.sign(((loop - loop.mean(1, keepdim=True)) * normal).sum(-1, keepdim=True))
    normal = normal * torch.where(outward == 0, torch.ones_like(outward), outward)
    eye = (xy[:, _EYE_CORNERS[0]] - xy[:, _EYE_CORNERS[1]]).norm(dim=-1)  # [B]
    excess = (mouth_opening(vertices) - REST_OPENING).clamp(min=0.0)  # [B]
    slope = torch.as_tensor(LIP_BORDER_SLOPE, dtype=dt, device=dev)
    shift = gain * slope[None, :, None] * (eye * excess)[:, None, None] * normal  # [B, 20, 2]
    ids, pair, share = (torch.as_tensor(a, device=dev) for a in lip_band())
    out = vertices.clone()
    out[:, idx, :2] = loop + shift
    out[:, ids, :2] = xy[:, ids] + share.to(dt)[None, :, None] * shift[:, pair]
    return out
