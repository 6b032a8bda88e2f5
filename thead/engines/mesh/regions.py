"""Regions of the head on the canvas, measured from face meshes: head weight, mirror region, head-proxy points.

The face's own frame (:func:`head_ellipse_coords`): origin between the outer eye corners (points 33, 263), v
towards the chin in eyes-to-chin distances (the chin at v = 1), u across; the head ellipse and the neck gate in it
are settings of :class:`MeshConfig`. Pixels are continuous, pixel centres at i + 0.5.
"""

from __future__ import annotations

import torch

from thead.engines.mesh.config import DEFAULT_CONFIG, MeshConfig
from thead.face.topology import CHIN, FACE_OVAL
from thead.render.dense_flow import smoothstep
from thead.render.mesh_warp import pixel_centres


def _face_axes(vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(eyes [B, 2]: midpoint of the outer eye corners, down [B, 2]: unit vector from it to the chin, unit [B, 1]:
    their distance, pixels) of face meshes [B, 478, >=2]."""
    xy = vertices[..., :2].float()
    eyes = 0.5 * (xy[:, 33] + xy[:, 263])
    down = xy[:, CHIN] - eyes
    unit = down.norm(dim=1, keepdim=True).clamp(min=1.0)
    return eyes, down / unit, unit


def head_ellipse_coords(vertices: torch.Tensor, height: int, width: int, config: MeshConfig = DEFAULT_CONFIG
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel's place in the face's own frame and in the head ellipse.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] face meshes (pixels).
    height, width : int
        The image's size in pixels.
    config : MeshConfig
        Its ``head_ellipse`` (centre v, half width, half height) is used.

    Returns
    -------
    v : torch.Tensor
        [B, H*W]: towards the chin in eyes-to-chin distances (0 between the outer eye corners, 1 at the chin).
    rho : torch.Tensor
        [B, H*W]: the radius in the head ellipse (1 on the ellipse).
    """
    eyes, down, unit = _face_axes(vertices)
    across = torch.stack([-down[:, 1], down[:, 0]], 1)
    rel = pixel_centres(height, width, vertices.device).view(1, 2, -1) - eyes[..., None]
    v = (rel * down[..., None]).sum(1) / unit
    u = (rel * across[..., None]).sum(1) / unit
    cv, a, b = config.head_ellipse
    return v, torch.sqrt((u / a) ** 2 + ((v - cv) / b) ** 2)


def below_head(v: torch.Tensor, config: MeshConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """The smooth gate under which the neck and shoulders are told apart from the head.

    Parameters
    ----------
    v : torch.Tensor
        Any shape: :func:`head_ellipse_coords`' v.
    config : MeshConfig
        Its ``head_ellipse_fade_from`` (v from, v to) is used.

    Returns
    -------
    torch.Tensor
        Like ``v``: 0 above the gate, rising smoothly to 1 below it.
    """
    g0, g1 = config.head_ellipse_fade_from
    return smoothstep((v - g0) / (g1 - g0))


def below_head_map(vertices: torch.Tensor, height: int, width: int, config: MeshConfig = DEFAULT_CONFIG,
                   origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """:func:`below_head` at every pixel of a window: 0 above the gate, 1 below it (the jaw and chin).

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] face meshes (pixels of the whole frame).
    height, width : int
        The window's size in pixels.
    config : MeshConfig
        Its ``head_ellipse_fade_from`` is used.
    origin : (int, int)
        (x, y) frame pixel of the window's top-left pixel.

    Returns
    -------
    torch.Tensor
        [B, 1, height, width] in [0, 1]. v is linear in the pixel's place, so it is the sum of a row and a column
        term (no per-pixel products).
    """
    eyes, down, unit = _face_axes(vertices)
    down = down / unit  # v per pixel along x and y
    xs = torch.arange(width, device=eyes.device, dtype=eyes.dtype) + (origin[0] + 0.5)
    ys = torch.arange(height, device=eyes.device, dtype=eyes.dtype) + (origin[1] + 0.5)
    across_rows = (xs[None] - eyes[:, :1]) * down[:, :1]  # [B, W]
    down_columns = (ys[None] - eyes[:, 1:]) * down[:, 1:]  # [B, H]
    return below_head(across_rows[:, None, None, :] + down_columns[:, None, :, None], config)


def neck_weight(vertices: torch.Tensor, height: int, width: int, config: MeshConfig = DEFAULT_CONFIG
                ) -> torch.Tensor:
    """The head weight: 1 on the head, 0 on the neck and shoulders.

    Below the gate (:func:`below_head`) the weight falls from 1 on the head ellipse to 0 ``neck_fade`` radii
    outside it; above the gate (hair, ears) it stays 1.

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] face meshes (pixels).
    height, width : int
        The image's size in pixels.
    config : MeshConfig
        Its ``head_ellipse``, ``head_ellipse_fade_from`` and ``neck_fade`` are used.

    Returns
    -------
    torch.Tensor
        [B, 1, H, W] in [0, 1].
    """
    v, rho = head_ellipse_coords(vertices, height, width, config)
    fade = smoothstep((rho - 1.0) / config.neck_fade) * below_head(v, config)
    return (1.0 - fade).view(-1, 1, height, width)


def mirror_region(vertices: torch.Tensor, height: int, width: int, config: MeshConfig = DEFAULT_CONFIG
                  ) -> torch.Tensor:
    """Where the symmetry fill may act: the head, but not the neck and shoulders (the clothes are not mirrored).

    Parameters
    ----------
    vertices : torch.Tensor
        [B, 478, >=2] target face meshes (pixels).
    height, width : int
        The image's size in pixels.
    config : MeshConfig
        Its ``mirror_region`` (head-ellipse radii over which the region fades out), ``mirror_neck`` (the same
        below the gate) and the head ellipse and gate are used.

    Returns
    -------
    torch.Tensor
        [B, 1, H, W] in [0, 1].
    """
    v, rho = head_ellipse_coords(vertices, height, width, config)
    r0, r1 = config.mirror_region
    head = smoothstep((r1 - rho) / (r1 - r0))
    n0, n1 = config.mirror_neck
    below = below_head(v, config) * smoothstep((rho - n0) / (n1 - n0))
    return (head * (1.0 - below)).view(-1, 1, height, width)


def mirror_index(points: torch.Tensor) -> torch.Tensor:
    """Each point's mirror partner among model-frame points.

    Parameters
    ----------
    points : torch.Tensor
        [K, 3] model-frame points (cm, x = 0 on the midline).

    Returns
    -------
    torch.Tensor
        long [K]: the index of the point nearest each one's mirror image (x -> -x).
    """
    flipped = points * torch.tensor([-1.0, 1.0, 1.0], device=points.device, dtype=points.dtype)
    return torch.cdist(flipped, points).argmin(dim=1)


def head_proxy_points(identity: torch.Tensor, config: MeshConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """Points on the skull around the face that turn rigidly with the head and drive the dense flow of the hair and
    head outline (the face mesh alone drags them too little, so a turned head looked turned less than it was).

    Parameters
    ----------
    identity : torch.Tensor
        [478, 3] a neutral shape (model frame, cm).
    config : MeshConfig
        Its ``head_proxy_centre``, ``head_proxy_rings`` and ``head_proxy_max_y`` are used: the upper face-oval
        points moved outwards about the centre by each ring's scale and deeper by its depth.

    Returns
    -------
    torch.Tensor
        [K, 3] head-proxy points (model frame, cm), ring after ring.
    """
    oval = identity[torch.as_tensor(FACE_OVAL, device=identity.device)]
    oval = oval[oval[:, 1] < config.head_proxy_max_y]
    centre = torch.tensor([*config.head_proxy_centre, 0.0], device=identity.device, dtype=identity.dtype)
    rings = []
    for scale, depth in config.head_proxy_rings:
        p = centre + (oval - centre) * torch.tensor([scale, scale, 1.0], device=identity.device)
        rings.append(p + torch.tensor([0.0, 0.0, depth], device=identity.device))
    return torch.cat(rings)


__all__ = ["below_head", "head_ellipse_coords", "head_proxy_points", "mirror_index", "mirror_region",
           "neck_weight"]
