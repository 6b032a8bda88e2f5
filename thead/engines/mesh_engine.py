"""The default, weight-free engine: the source face as a textured 3-D mesh, posed and rendered per frame.

``prepare`` takes the source crop, its detected 478 landmarks and its face-model fit. The texture coordinates are
the detected landmarks themselves (exact), and the source's residual is re-derived from them, so the model
reproduces the detected landmarks exactly: rendering the source's own parameters gives the source back.

``render`` builds, for each target, the source's face mesh with the target's pose, expression, residual and gaze
(``FaceModel.posed`` with the SOURCE identity) and renders it with the stages of :func:`thead.render.render_head`
(z-buffered mesh warp inside the face, dense warp around it, iris layer for gaze, closing lids, inner-mouth
layer: synthesised cavity and teeth, or the driver's mouth), with four additions that real clips showed were
needed (``bench/bench_reenact.py``):

* head proxy: points on the skull around the face turn rigidly with the head and drive the dense flow too, so
  hair and head outline follow a turn (the face mesh alone dragged them too little);
* head over body over background: the person (MediaPipe selfie segmentation, shipped in the mediapipe wheel)
  is split by a head weight (``neck_weight``: 1 on the head, fading down the neck) into a head layer, moved by
  the head's flow, and a body layer (neck and shoulders) that stays but for its neck stretching up after a
  rising head and bending after a head that moved far sideways, both over a still copy of the background
  (premultiplied layers; identity targets still give the source back). A head that drops or turns slides over
  its own neck and collar instead of dragging the wall beside the jaw down over the shoulders; ground the head
  uncovers shows the background plate (filled along its rows) dragged sideways with the head;
* padded canvas: the render runs on the crop plus a border, the source's own picture around the crop when
  given (``surroundings``), else the crop's mirror image, so the dense flow's taper to zero at the canvas edge
  never squeezes the crop's own border and hair the crop cut off comes in with a moving head;
* symmetry fill: where the target shows a side of the head the source turned away, the render of the source's
  mirror image (flipped about the face, landmarks relabelled by the model's mirror map) is blended in, with a
  per-vertex share from how squarely source and target see the surface, carried over the head beyond the mesh.

Everything is batched in torch (CPU or CUDA); the only Python loop is over batches of ``batch_size`` frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from thead.engines.motion import TargetParams
from thead.face.topology import CHIN, FACE_OVAL, LIPS_INNER
from thead.facemodel import geometry as geo
from thead.facemodel.model import FaceModel, load_face_model
from thead.fitting.result import FitResult
from thead.render import frames_to_tensor, prepare_source, render_head, tensor_to_frames
from thead.render.head_render import weighted_flow
from thead.render.images import bar_mask, fill_bars, letterbox_bars
from thead.render.dense_flow import smoothstep
from thead.render.layers import SourceFace, over
from thead.render.masks import blur3, fill_holes
from thead.render.mesh_warp import flow_to_grid, pixel_centres, warp_image
from thead.render.paste_back import warp_affine
from thead.render.symmetry import (fill_profile, fill_weight_map, flip_columns, flip_points, mesh_visibility,
                                   mirror_weights, mirrored_source, relight_mirror)

# Part of every output's cache key: bump it when a change to the engine changes what it renders, so outputs made
# by an older engine are redone rather than skipped as current.
ENGINE_VERSION = "mesh-8"
MOUTH_CORNERS_INNER = (int(LIPS_INNER[0]), int(LIPS_INNER[10]))  # 78 (subject's right), 308 (left)
# Head proxy: points on the skull around the face that turn rigidly with the head and drive the dense flow of the
# hair and head outline (the face mesh alone drags them too little, so a turned head looked turned less than it
# was). The upper face-oval points (above HEAD_PROXY_MAX_Y cm, i.e. not the jaw) moved outwards in x, y about
# HEAD_PROXY_CENTRE by each scale, and deeper by the matching depth (cm).
HEAD_PROXY_CENTRE = (0.0, -1.0)
HEAD_PROXY_RINGS = ((1.2, 3.0), (1.45, 6.0))  # (x-y scale, extra depth cm)
HEAD_PROXY_MAX_Y = 2.0
# Neck and shoulders: outside the head ellipse (centre v, half width, half height, in eyes-to-chin distances in
# the face's frame, v from the eyes towards the chin) and below the gate HEAD_ELLIPSE_FADE_FROM (v from, to),
# the head weight fades over NECK_FADE: that part of the person is the body layer, which takes NECK_FOLLOW of
# the head's motion (without a person mask: the dense flow fades to NECK_FOLLOW there).
HEAD_ELLIPSE = (0.16, 0.8, 0.88)
HEAD_ELLIPSE_FADE_FROM = (0.32, 0.64)
NECK_FADE = 0.56
NECK_FOLLOW = 0.0
# Sideways head motion (fraction of the crop side) the neck absorbs by bending before it goes along.
NECK_SLACK = 0.05
# Person matte: the segmentation's soft mask mapped through a smoothstep over MATTE_RANGE (crisper edges); the
# background plate keeps the source up to PLATE_MARGIN (fraction of the canvas side) off the matte.
MATTE_RANGE = (0.25, 0.75)
PLATE_MARGIN = 0.005
# Symmetry fill: the mirror image is rendered only for frames whose largest share exceeds MIN_MIRROR_SHARE, and
# used only on the head: its share fades from 1 to 0 between these head-ellipse radii (``HEAD_ELLIPSE`` units),
# and below the head (the neck gate) between the MIRROR_NECK radii (the clothes are not mirrored).
MIN_MIRROR_SHARE = 0.02
MIRROR_REGION = (1.5, 2.0)
MIRROR_NECK = (0.95, 1.25)
# Still background: ground the moved head uncovers (and this fraction of the canvas side around it) shows the
# background dragged along by the head's flow; everywhere else the background stands still. Past the crop's
# edges (not the bottom) the person matte fades out over EDGE_FADE of the crop side.
BACKGROUND_BAND = 0.01
EDGE_FADE = 0.015
# With the crop's real surroundings, their person mask blends into the crop's own over this fraction of the side.
SURROUND_BLEND = 0.1


@dataclass
class PreparedSource:
    """A source face ready to render (prepare once, render any number of targets).

    face: the renderer's prepared source (padded image, texture mesh, eye textures) on ``device``.
    landmarks [478, 3] float32: the detected source landmarks (crop pixels; the texture coordinates).
    identity [478, 3] cm: the source's neutral shape. residual [478, 3] cm: the residual that makes the model
    reproduce ``landmarks`` exactly under the source's own parameters; ``residual_fix`` = that minus the fit's
    residual, added to every target's residual (targets carry the fit's residual plus their changes).
    params: the source's own parameters (1 frame). size: crop side in pixels. pad: pixels of mirrored border
    around the crop in the render canvas (``face`` lives on the padded canvas).
    head_points [K, 3] cm: head-proxy points (model frame); head_source [1, K, 3]: where they are in the source
    (canvas pixels).
    person [1, 1, H, W] in [0, 1]: the source's person (head, hair, body) mask on the canvas, and background
    [1, 3, H, W]: the source with the person filled in from the surroundings; with them the background stays
    still and sharp while the person moves (None: the dense flow moves the background near the head too).
    head_weight [1, 1, H, W]: how much of each source pixel belongs to the head (``neck_weight``: 1 on the head,
    fading to 0 down the neck; None: all of it). With a person mask the head part of the person
    moves with the head and the rest (the body layer) stays; without one, the dense flow is weighted by it.
    visibility [1, 478]: how squarely the source saw each vertex, and mirrored: the source's mirror image prepared
    the same way (its own face, head points, masks on the flipped canvas), for the symmetry fill (None: off).
    bars [1, 1, S, S]: 1 on black bars framing the crop (``letterbox_bars``), framed [1, 3, S, S]: the source crop
    with them, put back over the output (None: no bars; ``face`` and the masks see the bars filled).
    """

    face: SourceFace
    landmarks: np.ndarray
    identity: torch.Tensor
    residual: torch.Tensor
    residual_fix: torch.Tensor
    params: TargetParams
    size: int
    device: torch.device
    pad: int = 0
    head_points: torch.Tensor | None = None
    head_source: torch.Tensor | None = None
    person: torch.Tensor | None = None
    background: torch.Tensor | None = None
    head_weight: torch.Tensor | None = None
    visibility: torch.Tensor | None = None
    mirrored: PreparedSource | None = None
    bars: torch.Tensor | None = None
    framed: torch.Tensor | None = None

    @property
    def background_share(self) -> torch.Tensor | None:
        """[1, 3, H, W]: the background's part of the source image, (1 - person) * background."""
        return None if self.person is None else (1.0 - self.person) * self.background

    @cached_property
    def body_layer(self) -> torch.Tensor | None:
        """[1, 4, H, W]: the body (neck, shoulders) as a premultiplied layer (colour, alpha) that lies under the
        head layer (the person times ``head_weight`` h): with P the person mask and X = P * colour the person's
        premultiplied colour, alpha P (1 - h) / (1 - P h) and colour X (1 - h) / (1 - P h), so that the head layer
        over it over the background gives the source back exactly. Opaque wherever the person is and h < 1: the
        neck runs up under the head, so a head that moves up or down never opens a gap. None without a person
        mask or head weight. Computed once per prepared source."""
        if self.person is None or self.head_weight is None:
            return None
        P, h = self.person, self.head_weight
        share = (1.0 - h) / (1.0 - P * h).clamp(min=1e-6)
        return torch.cat([premultiplied(self.face.image, P, self.background_share) * share, P * share], 1)


@dataclass
class EngineOutput:
    """frames uint8 [B, S, S, 3]; changed float32 [B, S, S] in [0, 1]: what the render changed (face and
    anything that moved; the ``crop_mask`` for :func:`thead.render.paste_back`); vertices float32 [B, 478, 3]:
    the target meshes (crop pixels, depth)."""

    frames: np.ndarray
    changed: np.ndarray
    vertices: np.ndarray


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def similarity_2d(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched least-squares 2-D similarity [B, 2, 3] with dst ~ A @ [src; 1], for points src, dst [B, N, 2]."""
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    a, b = src - ms, dst - md
    var = (a * a).sum((1, 2)).clamp(min=1e-9)
    c = ((a * b).sum((1, 2))) / var  # s cos
    s = ((a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]).sum(1)) / var  # s sin
    lin = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [B, 2, 2]
    t = md[:, 0] - (lin @ ms[:, 0, :, None])[..., 0]
    return torch.cat([lin, t[..., None]], -1)


def mouth_map(target_vertices: torch.Tensor, driver_vertices: torch.Tensor) -> torch.Tensor:
    """Affine maps [B, 2, 3] from target pixels to driver pixels that carry the driver's mouth opening onto the
    target's: a similarity on the inner-lip contour (position, size, tilt), then a stretch across the mouth
    (along the target's corner-line normal) by the ratio of the two openings (limited to [0.6, 1.6]), so the
    driver's teeth and tongue fill the target opening. vertices [B, 478, >=2] pixels."""
    lips_t = target_vertices[:, LIPS_INNER, :2].float()
    lips_d = driver_vertices[:, LIPS_INNER, :2].float()
    sim = similarity_2d(lips_t, lips_d)  # target -> driver
    r, l = MOUTH_CORNERS_INNER

    def opening_and_normal(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xy = v[..., :2].float()
        axis = xy[:, l] - xy[:, r]
        axis = axis / axis.norm(dim=1, keepdim=True).clamp(min=1e-6)
        normal = torch.stack([-axis[:, 1], axis[:, 0]], 1)
        rel = xy[:, LIPS_INNER] - xy[:, LIPS_INNER].mean(1, keepdim=True)
        across = (rel * normal[:, None]).sum(-1)
        return across.amax(1) - across.amin(1), normal, xy[:, LIPS_INNER].mean(1)

    open_t, normal_t, centre_t = opening_and_normal(target_vertices)
    open_d, _, _ = opening_and_normal(driver_vertices)
    sim_scale = sim[:, :, :2].det().abs().sqrt()
    # Stretch k along the target normal: 1 + (k - 1) n n^T, about the target mouth centre.
    k = (open_d / (open_t * sim_scale).clamp(min=1e-3)).clamp(0.6, 1.6)
    k = torch.where(open_t > 1.0, k, torch.ones_like(k))
    nn_t = normal_t[:, :, None] * normal_t[:, None, :]
    stretch = torch.eye(2, device=k.device).expand_as(nn_t) + (k - 1.0).view(-1, 1, 1) * nn_t
    shift = centre_t - (stretch @ centre_t[..., None])[..., 0]
    pre = torch.cat([stretch, shift[..., None]], -1)  # target -> stretched target
    return torch.cat([sim[:, :, :2] @ pre[:, :, :2], (sim[:, :, :2] @ pre[:, :, 2:]) + sim[:, :, 2:]], -1)


def person_mask(image: np.ndarray) -> np.ndarray:
    """Soft person mask float32 [H, W] in [0, 1] of an RGB uint8 image (MediaPipe selfie segmentation, whose
    model ships inside the mediapipe wheel)."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        result = seg.process(np.ascontiguousarray(image))
    mask = result.segmentation_mask
    if mask is None:
        return np.zeros(image.shape[:2], np.float32)
    return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)


def premultiplied(image: torch.Tensor, alpha: torch.Tensor, background_share: torch.Tensor) -> torch.Tensor:
    """The foreground's premultiplied colour [B, 3, H, W] of an image [B, 3, H, W] that is alpha [B, 1, H, W] of
    a foreground over a background whose share in it is ``background_share`` [B, 3, H, W] = (1 - alpha) *
    background: image - background_share, limited to [0, alpha] per channel. The limit matters where the
    background guess is poor (a smooth fill behind a soft outline): there the difference goes negative or past
    alpha and would show as dark or bright lines once the outline moves over something else."""
    return torch.minimum((image - background_share).clamp(min=0.0), alpha)


def outside_fade(size: int, pad: int, fraction: float, device: torch.device | str | None = None) -> torch.Tensor:
    """[1, 1, S + 2 pad, S + 2 pad]: 1 on the crop (S pixels) inside a canvas padded by ``pad`` pixels, falling
    smoothly to 0 at ``fraction`` * S pixels outside it (the bottom edge excepted: the body goes on below)."""
    c = torch.arange(size + 2 * pad, device=device, dtype=torch.float32) + 0.5
    out = (pad - c).clamp(min=0.0) + (c - pad - size).clamp(min=0.0)  # pixels outside along one axis
    ramp = 1.0 - smoothstep(out / max(fraction * size, 1e-6))
    below = c > pad + size
    ramp_y = torch.where(below, torch.ones_like(ramp), ramp)
    return (ramp_y.view(-1, 1) * ramp.view(1, -1)).view(1, 1, size + 2 * pad, size + 2 * pad)


def past_picture_fade(picture: np.ndarray, pixels: float) -> torch.Tensor:
    """[1, 1, H, W]: 1 where ``picture`` [H, W] (1: the picture, 0: its mirror image past the edge) is >= 0.5 and
    below such pixels (the body goes on below the picture), falling smoothly to 0 ``pixels`` past its top and
    sides: nobody knows where the person ends out there."""
    import cv2

    inside = np.maximum.accumulate(np.asarray(picture) >= 0.5, axis=0)
    if inside.all():
        return torch.ones(1, 1, *inside.shape)
    dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
    return 1.0 - smoothstep(torch.as_tensor(dist / max(pixels, 1e-6), dtype=torch.float32))[None, None]


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grey dilation of [B, C, H, W] by a (2 * pixels + 1) square."""
    return F.max_pool2d(mask, 2 * pixels + 1, 1, pixels) if pixels > 0 else mask


def head_ellipse_coords(vertices: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(v, rho), each [B, H*W], of every pixel in the face's own frame of face meshes [B, 478, >=2] (pixels):
    origin between the outer eye corners, v towards the chin in eyes-to-chin distances (the chin is at v = 1),
    rho the radius in the head ellipse ``HEAD_ELLIPSE`` (centre v, half width, half height; 1 on the ellipse)."""
    xy = vertices[..., :2].float()
    eyes = 0.5 * (xy[:, 33] + xy[:, 263])
    down = xy[:, CHIN] - eyes
    unit = down.norm(dim=1, keepdim=True).clamp(min=1.0)
    down = down / unit
    across = torch.stack([-down[:, 1], down[:, 0]], 1)
    rel = pixel_centres(height, width, vertices.device).view(1, 2, -1) - eyes[..., None]
    v = (rel * down[..., None]).sum(1) / unit
    u = (rel * across[..., None]).sum(1) / unit
    cv, a, b = HEAD_ELLIPSE
    return v, torch.sqrt((u / a) ** 2 + ((v - cv) / b) ** 2)


def neck_weight(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, 1, H, W] head weight: 1 on the head, 0 on the neck and shoulders.

    Measured with :func:`head_ellipse_coords` of face meshes [B, 478, >=2] (pixels): below
    ``HEAD_ELLIPSE_FADE_FROM`` (v range of a smooth gate) the weight falls from 1 at the head ellipse to 0 over
    ``NECK_FADE`` outside it. Above the gate (hair, ears) it stays 1.
    """
    v, rho = head_ellipse_coords(vertices, height, width)
    fade = smoothstep((rho - 1.0) / NECK_FADE) * below_head(v)
    return (1.0 - fade).view(-1, 1, height, width)


def below_head(v: torch.Tensor) -> torch.Tensor:
    """The smooth gate (0 above, 1 below ``HEAD_ELLIPSE_FADE_FROM``) on :func:`head_ellipse_coords`' v under which
    the neck and shoulders are told apart from the head."""
    g0, g1 = HEAD_ELLIPSE_FADE_FROM
    return smoothstep((v - g0) / (g1 - g0))


def mirror_region(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, 1, H, W] where the symmetry fill may act: the head (``MIRROR_REGION`` radii of the head ellipse) but
    not the neck and shoulders (below the ``HEAD_ELLIPSE_FADE_FROM`` gate it ends ``MIRROR_NECK`` radii past the
    ellipse: the clothes are not mirrored). vertices: target meshes [B, 478, >=2] pixels."""
    v, rho = head_ellipse_coords(vertices, height, width)
    r0, r1 = MIRROR_REGION
    head = smoothstep((r1 - rho) / (r1 - r0))
    below = below_head(v) * smoothstep((rho - MIRROR_NECK[0]) / (MIRROR_NECK[1] - MIRROR_NECK[0]))
    return (head * (1.0 - below)).view(-1, 1, height, width)


def mirror_index(points: torch.Tensor) -> torch.Tensor:
    """[K] long: for model-frame points [K, 3] (cm, x = 0 on the midline), the index of the point nearest each
    one's mirror image (x -> -x)."""
    flipped = points * torch.tensor([-1.0, 1.0, 1.0], device=points.device, dtype=points.dtype)
    return torch.cdist(flipped, points).argmin(dim=1)


def head_proxy_points(identity: torch.Tensor) -> torch.Tensor:
    """Head-proxy points [K, 3] (model frame, cm) of a neutral shape [478, 3]; see ``HEAD_PROXY_RINGS``."""
    oval = identity[torch.as_tensor(FACE_OVAL, device=identity.device)]
    oval = oval[oval[:, 1] < HEAD_PROXY_MAX_Y]
    centre = torch.tensor([*HEAD_PROXY_CENTRE, 0.0], device=identity.device, dtype=identity.dtype)
    rings = []
    for scale, depth in HEAD_PROXY_RINGS:
        p = centre + (oval - centre) * torch.tensor([scale, scale, 1.0], device=identity.device)
        rings.append(p + torch.tensor([0.0, 0.0, depth], device=identity.device))
    return torch.cat(rings)


class MeshEngine:
    """Weight-free reenactment / editing: ``prepare`` a source once, ``render`` target parameters in batches.

    device: "cpu", "cuda" or None (CUDA when available). batch_size: frames per torch call.
    head_proxy: skull points around the face turn with the head and move the hair and head outline with it.
    neck_follow: share of the head's motion the shoulders take (below ``neck_weight``'s fade; the body layer's
    neck stretches up after a rising head from there, and bends after sideways motion beyond ``NECK_SLACK``;
    None: no head/body split, the dense flow moves them like render_head does). pad_fraction: the render
    canvas is the crop plus this fraction of its side on each edge (border mirrored), so that the dense flow's taper to
    zero at the canvas border never squeezes the crop's own border rows. falloff: the dense flow reaches zero this
    many face sizes away from the driving points. background: "still" (default): the person (head, hair,
    body; MediaPipe selfie segmentation of the source) is warped over a still copy of the background whose
    uncovered parts are filled from the surroundings; "warp": the dense flow moves everything near the head.
    symmetry: where a target shows what the source hid or saw edge-on (a cheek, ear and hair turned away), blend
    in the render of the source's mirror image (``thead.render.symmetry``).
    """

    name = "mesh"

    def __init__(self, device: str | torch.device | None = None, batch_size: int = 16,
                 model: FaceModel | None = None, *, head_proxy: bool = True,
                 pad_fraction: float = 0.125, falloff: float = 0.6, background: str = "still",
                 neck_follow: float | None = NECK_FOLLOW, symmetry: bool = True) -> None:
        self.device = _default_device(device)
        self.batch_size = max(1, int(batch_size))
        self.model = load_face_model() if model is None else model
        self.head_proxy = bool(head_proxy)
        self.pad_fraction = max(0.0, float(pad_fraction))
        self.falloff = float(falloff)
        if background not in ("still", "warp"):
            raise ValueError(f"background must be 'still' or 'warp', got '{background}'")
        self.background = background
        self.neck_follow = None if neck_follow is None else float(neck_follow)
        self.symmetry = bool(symmetry)
        self.mirror = torch.as_tensor(self.model.mirror, dtype=torch.long, device=self.device)  # [478]

    # ------------------------------------------------------------------------------------------- source
    def canvas_pad(self, size: int) -> int:
        """Pixels of border around an S-pixel crop in the render canvas (``pad_fraction`` of S)."""
        return int(round(self.pad_fraction * size))

    @torch.no_grad()
    def prepare(self, source_image: np.ndarray, source_landmarks: np.ndarray, source_fit: FitResult,
                frame: int = 0, person: np.ndarray | None = None,
                surroundings: np.ndarray | None = None, picture: np.ndarray | None = None) -> PreparedSource:
        """source_image uint8 [S, S, 3] (the crop), source_landmarks [478, 3] crop pixels (as detected),
        source_fit: its fit (T = 1, or frame ``frame`` of a video fit). person: optional soft person mask [S, S]
        in [0, 1] (default: MediaPipe selfie segmentation when ``background="still"``). surroundings: optional
        uint8 [S + 2 p, S + 2 p, 3], p = ``canvas_pad(S)``: the crop with the picture around it (``crop_frame``
        with ``margin=p``); hair and background the crop cut off then come in from the picture when the head
        moves, instead of from a mirror image of the crop (ignored for a letterboxed crop). picture: optional
        float [S + 2 p, S + 2 p] in [0, 1], where the surroundings show the picture (1) rather than its mirror
        image past the picture's edge (0; ``picture_mask``): the person fades out past the picture's top and
        sides there, as past the crop's edge without surroundings."""
        img = np.asarray(source_image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.shape[0] != img.shape[1]:
            raise ValueError(f"source_image must be a square uint8 crop [S, S, 3], got {img.dtype} {img.shape}")
        lm = np.asarray(source_landmarks, np.float32)
        if lm.shape != (478, 3) or not np.isfinite(lm).all():
            raise ValueError(f"source_landmarks must be finite [478, 3], got {lm.shape}")
        if not isinstance(source_fit, FitResult) or source_fit.identity.shape != (478, 3):
            raise ValueError("source_fit must be a FitResult of the 478-point model")
        params = TargetParams.from_fit(source_fit, frame)
        dev = self.device
        bars = letterbox_bars(img)
        bar_alpha = framed = None
        if any(bars):
            # Black bars framing the picture (a letterboxed video) are not part of the scene: the render sees the
            # picture's edge repeated into them (a neck stretching up reads neck, not black) and the bars are put
            # back over every output frame.
            bar_alpha = torch.as_tensor(bar_mask(img.shape[:2], bars), device=dev)[None, None]
            framed = frames_to_tensor(img, dev)
            img = fill_bars(img, bars)
        identity = torch.as_tensor(source_fit.identity, dtype=torch.float32, device=dev)
        pose = torch.as_tensor(params.pose, device=dev)
        depth = torch.as_tensor(params.depth_offset, device=dev)
        lm_t = torch.as_tensor(lm, device=dev)[None]
        # Residual that makes the model hit the detected landmarks exactly (model frame, cm).
        model_pts = self.model.shape(identity, torch.as_tensor(params.expression, device=dev), None,
                                     torch.as_tensor(params.gaze, device=dev))
        exact = geo.unproject(lm_t, pose, depth) - model_pts  # [1, 478, 3]
        fix = exact[0] - torch.as_tensor(params.residual[0], device=dev)
        size = int(img.shape[0])
        pad = self.canvas_pad(size)
        if surroundings is not None:
            surroundings = np.asarray(surroundings)
            if surroundings.shape != (size + 2 * pad, size + 2 * pad, 3) or surroundings.dtype != np.uint8:
                raise ValueError(f"surroundings must be uint8 [{size + 2 * pad}, {size + 2 * pad}, 3] (the crop with "
                                 f"{pad} pixels around it), got {surroundings.dtype} {surroundings.shape}")
            if framed is not None:
                surroundings = None  # the bars frame the picture: what lies past them is not the scene
            else:
                surroundings = surroundings.copy()
                surroundings[pad:pad + size, pad:pad + size] = img  # the crop itself is the source, to the level
        image = frames_to_tensor(img if surroundings is None else surroundings, dev)
        if surroundings is None and pad:
            # Mirrored, not replicated: where the head moves away from a crop edge that cut the hair, the
            # uncovered band then shows plausible hair texture instead of streaks of the edge row.
            image = F.pad(image, (pad, pad, pad, pad), mode="reflect")
        shift = torch.tensor([pad, pad, 0.0], device=dev)
        face = prepare_source(image, lm_t + shift)
        head = head_src = None
        if self.head_proxy:
            head = head_proxy_points(identity)
            head_src = geo.transform_points(head[None], pose, depth) + shift
        mask = background = None
        if self.background == "still":
            mask, background = self._still_background(img, image, lm_t + shift, pad, person, surroundings, picture)
        weight = None
        if self.neck_follow is not None:
            weight = neck_weight(lm_t + shift, image.shape[-2], image.shape[-1])
        prepared = PreparedSource(face=face, landmarks=lm, identity=identity, residual=exact[0], residual_fix=fix,
                                  params=params, size=size, device=dev, pad=pad, head_points=head,
                                  head_source=head_src, person=mask, background=background,
                                  head_weight=weight, bars=bar_alpha, framed=framed)
        if self.symmetry:
            self._prepare_mirror(prepared, image, lm_t + shift)
        return prepared

    def _prepare_mirror(self, prepared: PreparedSource, canvas: torch.Tensor, vertices: torch.Tensor) -> None:
        """Add the source's visibility and its mirror image (``symmetry``) to ``prepared``. canvas [1, 3, H, W],
        vertices [1, 478, 3] canvas pixels with depth."""
        prepared.visibility = mesh_visibility(vertices)
        image, flipped, k = mirrored_source(canvas, vertices, self.mirror)
        image = relight_mirror(canvas, vertices, self.mirror, prepared.visibility, image, flipped)
        flip = lambda x: None if x is None else flip_columns(x, k)  # noqa: E731
        head_src = None
        if prepared.head_points is not None:
            head_src = flip_points(prepared.head_source, k)[:, mirror_index(prepared.head_points)]
        prepared.mirrored = replace(prepared, face=prepare_source(image, flipped), head_source=head_src,
                                    person=flip(prepared.person), background=flip(prepared.background),
                                    head_weight=flip(prepared.head_weight), visibility=None, mirrored=None)

    def _still_background(self, crop: np.ndarray, canvas: torch.Tensor, vertices: torch.Tensor, pad: int,
                          person: np.ndarray | None, surroundings: np.ndarray | None = None,
                          picture: np.ndarray | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(person mask [1, 1, H, W], background plate [1, 3, H, W]) on the canvas, or (None, None) when the
        segmentation misses the face (then the dense flow moves the background as in ``background="warp"``).
        surroundings: the canvas as a uint8 picture (the crop's real surroundings), segmented around the crop;
        picture: where it shows the picture rather than its mirror image (used only with surroundings)."""
        from thead.render.masks import triangle_set_masks
        from thead.render.mesh_topology import closed_mesh_triangles

        dev = canvas.device
        m = person_mask(crop) if person is None else np.asarray(person, np.float32)
        if m.shape != crop.shape[:2]:
            raise ValueError(f"person mask must be [{crop.shape[0]}, {crop.shape[1]}], got {m.shape}")
        whole = surroundings is not None and pad > 0
        if whole:
            # The picture around the crop is segmented too; the crop's own, finer mask takes over inside the crop
            # over a band of SURROUND_BLEND of its side (no seam where the two segmentations differ).
            around = person_mask(surroundings)
            S = crop.shape[0]
            edge = np.minimum(np.arange(S) + 0.5, S - 0.5 - np.arange(S))  # pixels from the crop's edge
            w = np.clip(np.minimum(edge[:, None], edge[None, :]) / max(SURROUND_BLEND * S, 1.0), 0.0, 1.0)
            inner = around[pad:pad + S, pad:pad + S]
            around[pad:pad + S, pad:pad + S] = w * m + (1.0 - w) * inner
            m = around
        mask = torch.as_tensor(m, device=dev)[None, None]
        if pad and not whole:
            mask = F.pad(mask, (pad, pad, pad, pad), mode="reflect")  # as the canvas: the plate's hole fits it
        H, W = canvas.shape[-2:]
        face = triangle_set_masks(vertices, [closed_mesh_triangles()], H, W)
        covered = float((mask * face).sum() / face.sum().clamp(min=1.0))
        if covered < 0.8:
            return None, None
        # A crisper matte: fewer half-person pixels whose background share has to come from the plate's guess.
        mask = torch.maximum(smoothstep((mask - MATTE_RANGE[0]) / (MATTE_RANGE[1] - MATTE_RANGE[0])), face)
        # Background plate: the source wherever the matte is 0 (a margin of PLATE_MARGIN off the person), a
        # smooth fill along each row elsewhere (the wall's horizontal lines run on through the person's place).
        # The compositing subtracts (1 - matte) * plate from the warped source, so the plate must equal the source
        # wherever the matte says "background".
        known = 1.0 - dilate((mask > 0.0).float(), max(1, int(round(PLATE_MARGIN * H))))
        plate = fill_holes(canvas, known, along_rows=True)
        if whole and picture is not None:
            mask = mask * past_picture_fade(picture, EDGE_FADE * crop.shape[0]).to(dev)
        if pad and not whole:
            # Past the crop's edge nobody knows where the person ends: the matte (not the plate's hole) fades out
            # over EDGE_FADE of the crop side, so hair cut by the crop's top edge ends softly when the head moves
            # down, instead of being stretched out of the mirrored border.
            mask = mask * outside_fade(crop.shape[0], pad, EDGE_FADE, dev)
        return mask, plate

    # ------------------------------------------------------------------------------------------- targets
    @torch.no_grad()
    def target_vertices(self, prepared: PreparedSource, targets: TargetParams) -> torch.Tensor:
        """Target meshes [B, 478, 3] (crop pixels x, y and depth) on the engine's device."""
        dev = prepared.device
        t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=dev)  # noqa: E731
        residual = t(targets.residual) + prepared.residual_fix
        return self.model.posed(t(targets.pose), prepared.identity, t(targets.expression), residual,
                                t(targets.gaze), t(targets.depth_offset))

    @torch.no_grad()
    def _render_batch(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None,
                      mouth_landmarks: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images [B, 3, S, S], changed [B, 1, S, S], target vertices [B, 478, 3] crop pixels)."""
        dev, pad, size = prepared.device, prepared.pad, prepared.size
        dst = self.target_vertices(prepared, targets)
        B = dst.shape[0]
        mouth_image = None
        if mouth_frames is not None:
            drv = frames_to_tensor(np.asarray(mouth_frames), dev)
            drv_v = torch.as_tensor(np.asarray(mouth_landmarks, np.float32), device=dev)
            mouth_image = warp_affine(drv, mouth_map(dst, drv_v), size, size)
            if pad:
                mouth_image = F.pad(mouth_image, (pad, pad, pad, pad), mode="replicate")
        shift = torch.tensor([pad, pad, 0.0], device=dev)
        dst_canvas = dst + shift
        dst_head = None
        if prepared.head_points is not None:
            pose = torch.as_tensor(targets.pose, dtype=torch.float32, device=dev)
            depth = torch.as_tensor(targets.depth_offset, dtype=torch.float32, device=dev)
            dst_head = (geo.transform_points(prepared.head_points.expand(B, -1, -1), pose, depth) + shift)[..., :2]
        image, changed = self._render_source(prepared, prepared, dst_canvas, dst_head, mouth_image)
        if prepared.mirrored is not None:
            weights = mirror_weights(prepared.visibility, dst_canvas, self.mirror)
            side, profile = fill_profile(dst_canvas, weights)
            need = torch.nonzero(profile[:, -1] > MIN_MIRROR_SHARE).squeeze(1)  # frames that use the mirror image
            if need.numel():
                H, W = image.shape[-2:]
                dst_n = dst_canvas[need]
                share = (fill_weight_map(dst_n, weights[need], H, W, (side[need], profile[need]))
                         * mirror_region(dst_n, H, W))
                image_m, changed_m = self._render_source(
                    prepared.mirrored, prepared, dst_n, None if dst_head is None else dst_head[need],
                    None if mouth_image is None else mouth_image[need])
                image = image.index_copy(0, need, over(image[need], image_m, share))
                changed = changed.index_copy(0, need, torch.maximum(changed[need], changed_m * share))
        crop = (slice(None), slice(None), slice(pad, pad + size), slice(pad, pad + size))
        image, changed = image[crop], changed[crop]
        if prepared.bars is not None:
            image = image + prepared.bars * (prepared.framed - image)
            changed = changed * (1.0 - prepared.bars)
        return image, changed, dst

    def _render_source(self, source: PreparedSource, still: PreparedSource, dst: torch.Tensor,
                       dst_head: torch.Tensor | None, mouth_image: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Render ``source`` (the prepared source or its mirror image) at target meshes dst [B, 478, 3] (canvas
        pixels) over ``still``'s body and background: (image [B, 3, H, W], changed [B, 1, H, W]) on the canvas.
        dst_head [B, K, 2]: where the head points go (None: no head proxy)."""
        B = dst.shape[0]
        extra = None
        if source.head_source is not None and dst_head is not None:
            extra = (source.head_source[..., :2].expand(B, -1, -1), dst_head)
        layered = source.person is not None and still.person is not None
        weight = None
        if not layered and source.head_weight is not None and self.neck_follow is not None:
            weight = self.neck_follow + (1.0 - self.neck_follow) * source.head_weight
        out = render_head(source.face, dst, mouth_image=mouth_image, falloff=self.falloff,
                          extra_points=extra, source_weight=weight)
        mesh_mask = out.mesh.mask
        image = out.image
        moved = smoothstep(out.flow.norm(dim=1, keepdim=True) / 1.0)
        if layered:
            # Layers, back to front: the still background; the body (neck and shoulders, ``body_layer``; still
            # but for its neck stretching and bending after the head); the head (the person times the head weight,
            # moved by the head's flow; the rendered face inside the mesh). Premultiplied: the warped person is the
            # warped source minus its warped (1 - P) * background. Identity targets give the source back exactly.
            head = torch.ones_like(source.person) if source.head_weight is None else source.head_weight
            layers = torch.cat([source.person, source.background_share, head], 1)
            both = warp_image(layers, out.grid)
            head_t = both[:, 4:5] * (1.0 - mesh_mask)
            alpha = mesh_mask + head_t * both[:, :1]
            colour = mesh_mask * image + head_t * premultiplied(image, both[:, :1], both[:, 1:4])
            size = tuple(image.shape[-2:])
            body = still.body_layer
            if body is not None:
                # The body stays, but where the head rises away from it the neck stretches up after it (the head's
                # flow fading down the neck, its upward part only): a rising head never leaves its collar and the
                # top of the neck showing through its own soft lower edge, and a dropping one still slides over.
                follow = self.neck_follow or 0.0
                pull = weighted_flow(out.flow, follow + (1.0 - follow) * still.head_weight)
                # Sideways it bends: the neck takes the head's sideways motion beyond NECK_SLACK of the crop side
                # (no still neck left showing beside a jaw that moved far), none of a small sway.
                slack = NECK_SLACK * still.size
                px = pull[:, :1]
                px = follow * px + (1.0 - follow) * torch.sign(px) * (px.abs() - slack).clamp(min=0.0)
                pull = torch.cat([px, pull[:, 1:].clamp(min=0.0)], 1)
                body = warp_image(body, flow_to_grid(pull, size))
            # Background: still, except where the head uncovers ground the source never showed (the source's head,
            # now neither head nor body): there the plate (filled along its rows, so a shelf or a horizon runs on
            # behind the head) is dragged sideways with the head, bringing the real wall beside the old head in
            # rather than the plate's smooth fill, and never up or down across the plate's horizontal lines.
            cover = alpha if body is None else alpha + (1.0 - alpha) * body[:, 3:]
            band = max(1, int(round(BACKGROUND_BAND * image.shape[-2])))
            head_s = still.person if still.head_weight is None else still.person * still.head_weight
            uncovered = ((head_s - cover) > 0.05).to(image.dtype)
            near = blur3(dilate(uncovered, band), 2).clamp(0.0, 1.0)
            sideways = torch.cat([out.flow[:, :1], torch.zeros_like(out.flow[:, 1:])], 1)
            dragged = warp_image(source.background, flow_to_grid(sideways, size))
            background = still.background + near * (dragged - still.background)
            if body is not None:
                background = body[:, :3] + (1.0 - body[:, 3:]) * background
            image = colour + (1.0 - alpha) * background
            moved = moved * torch.maximum(cover, still.person)
        changed = blur3(torch.maximum(mesh_mask, moved), 3).clamp(0.0, 1.0)
        return image, changed

    def _batches(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.batch_size):
            yield slice(start, min(start + self.batch_size, n))

    @staticmethod
    def _check_mouth(targets: TargetParams, mouth_frames: np.ndarray | None,
                     mouth_landmarks: np.ndarray | None, size: int) -> None:
        if mouth_frames is None:
            return
        if mouth_landmarks is None:
            raise ValueError("mouth_frames need mouth_landmarks (the driver crop's landmarks)")
        if len(mouth_frames) != len(targets) or len(mouth_landmarks) != len(targets):
            raise ValueError(f"{len(targets)} targets but {len(mouth_frames)} mouth frames and "
                             f"{len(mouth_landmarks)} mouth landmark sets")
        if tuple(np.shape(mouth_frames)[1:]) != (size, size, 3):
            raise ValueError(f"mouth_frames must be [B, {size}, {size}, 3] like the source crop")

    def render(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None = None,
               mouth_landmarks: np.ndarray | None = None) -> np.ndarray:
        """uint8 frames [B, S, S, 3] of the source at ``targets`` (B frames).

        mouth_frames uint8 [B, S, S, 3] with mouth_landmarks [B, 478, 3] (crop pixels): the driver's crops, whose
        inner mouth (teeth, tongue) is carried into the target mouth; default: the source's interior riding with
        the lips plus a synthesised cavity and teeth.
        """
        return self.render_full(prepared, targets, mouth_frames, mouth_landmarks).frames

    def render_full(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None = None,
                    mouth_landmarks: np.ndarray | None = None) -> EngineOutput:
        """``render`` plus the changed-region masks and target meshes (for pasting back into full frames)."""
        self._check_mouth(targets, mouth_frames, mouth_landmarks, prepared.size)
        frames, changed, verts = [], [], []
        for sl in self._batches(len(targets)):
            img, ch, dst = self._render_batch(prepared, targets[sl], None if mouth_frames is None else
                                              mouth_frames[sl], None if mouth_landmarks is None else
                                              mouth_landmarks[sl])
            frames.append(tensor_to_frames(img))
            changed.append(ch[:, 0].float().cpu().numpy())
            verts.append(dst.float().cpu().numpy())
        s = prepared.size
        if not frames:
            return EngineOutput(np.zeros((0, s, s, 3), np.uint8), np.zeros((0, s, s), np.float32),
                                np.zeros((0, 478, 3), np.float32))
        return EngineOutput(np.concatenate(frames), np.concatenate(changed), np.concatenate(verts))

    def render_frames(self, prepared: PreparedSource, targets: TargetParams,
                      mouth: Iterable[tuple[np.ndarray, np.ndarray]] | None = None) -> Iterator[np.ndarray]:
        """Stream uint8 batches [b, S, S, 3] (b <= batch_size) for long target sequences.

        mouth: optional iterable of (driver crop frame [S, S, 3], its landmarks [478, 3]) per target frame, read
        lazily batch by batch (e.g. zip(iter_frames(crop.mp4), crop_landmarks)).
        """
        mouth_iter = None if mouth is None else iter(mouth)
        for sl in self._batches(len(targets)):
            batch = targets[sl]
            m_frames = m_lm = None
            if mouth_iter is not None:
                pairs = [next(mouth_iter) for _ in range(len(batch))]
                m_frames = np.stack([p[0] for p in pairs])
                m_lm = np.stack([np.asarray(p[1], np.float32) for p in pairs])
                self._check_mouth(batch, m_frames, m_lm, prepared.size)
            img, _, _ = self._render_batch(prepared, batch, m_frames, m_lm)
            yield tensor_to_frames(img)


__all__ = ["ENGINE_VERSION", "EngineOutput", "MeshEngine", "PreparedSource", "fill_holes", "head_ellipse_coords",
           "head_proxy_points", "mirror_index", "mirror_region", "mouth_map", "neck_weight", "person_mask",
           "similarity_2d", "warp_affine"]
