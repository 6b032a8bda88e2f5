"""The default, weight-free engine: the source face as a textured 3-D mesh, posed and rendered per frame.

``prepare`` takes the source crop, its detected 478 landmarks and its face-model fit. The texture coordinates are
the detected landmarks themselves (exact), and the source's residual is re-derived from them, so the model
reproduces the detected landmarks exactly: rendering the source's own parameters gives the source back.

``render`` builds, for each target, the source's face mesh with the target's pose, expression, residual and gaze
(``FaceModel.posed`` with the SOURCE identity) and hands it to :func:`thead.render.render_head`: z-buffered mesh
warp inside the face, dense warp of hair / neck / background fading to a still background, iris layer (gaze),
closing lids, and the inner-mouth layer (synthesised cavity and teeth, or the driver's mouth). Everything is
batched in torch (CPU or CUDA); the only Python loop is over batches of ``batch_size`` frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from thead.engines.motion import TargetParams
from thead.face.topology import CHIN, FACE_OVAL, LIPS_INNER, NUM_POINTS
from thead.facemodel import geometry as geo
from thead.facemodel.model import FaceModel, load_face_model
from thead.fitting.result import FitResult
from thead.render import frames_to_tensor, prepare_source, tensor_to_frames
from thead.render.dense_flow import blend_flows, dense_backward_flow, smoothstep
from thead.render.eyes import eye_span, lid_split_vertices
from thead.render.layers import SourceFace, composite_layers, over
from thead.render.masks import blur3
from thead.render.mesh_topology import dense_flow_points, lid_split_mesh
from thead.render.mesh_warp import flow_to_grid, mesh_warp_maps, pixel_centres, vertex_stretch, warp_image

MOUTH_CORNERS_INNER = (int(LIPS_INNER[0]), int(LIPS_INNER[10]))  # 78 (subject's right), 308 (left)
# Head proxy: points on the skull around the face that turn rigidly with the head and drive the dense flow of the
# hair and head outline (the face mesh alone drags them too little, so a turned head looked turned less than it
# was). The upper face-oval points (above HEAD_PROXY_MAX_Y cm, i.e. not the jaw) moved outwards in x, y about
# HEAD_PROXY_CENTRE by each scale, and deeper by the matching depth (cm).
HEAD_PROXY_CENTRE = (0.0, -1.0)
HEAD_PROXY_RINGS = ((1.2, 2.0), (1.45, 4.5))  # (x-y scale, extra depth cm)
HEAD_PROXY_MAX_Y = 2.0
# Torso anchors: still points below the chin (in face heights below the chin, face widths across) that keep the
# shoulders from following the head.
TORSO_ANCHOR_ROWS = (0.55, 0.85)
TORSO_ANCHOR_COLS = (-0.6, -0.3, 0.0, 0.3, 0.6)


@dataclass
class PreparedSource:
    """A source face ready to render (prepare once, render any number of targets).

    face: the renderer's prepared source (image, texture mesh, eye textures) on ``device``.
    landmarks [478, 3] float32: the detected source landmarks (crop pixels; the texture coordinates).
    identity [478, 3] cm: the source's neutral shape. residual [478, 3] cm: the residual that makes the model
    reproduce ``landmarks`` exactly under the source's own parameters; ``residual_fix`` = that minus the fit's
    residual, added to every target's residual (targets carry the fit's residual plus their changes).
    params: the source's own parameters (1 frame). size: crop side in pixels.
    """

    face: SourceFace
    landmarks: np.ndarray
    identity: torch.Tensor
    residual: torch.Tensor
    residual_fix: torch.Tensor
    params: TargetParams
    size: int
    device: torch.device


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


def warp_affine(images: torch.Tensor, maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """images [B, C, Hs, Ws] sampled at ``maps`` [B, 2, 3] (output pixel -> image pixel) -> [B, C, H, W]."""
    hs, ws = images.shape[-2:]
    pix = pixel_centres(height, width, images.device, images.dtype).view(1, 2, -1)
    pos = maps[:, :, :2].to(images.dtype) @ pix + maps[:, :, 2:].to(images.dtype)
    grid = pos * torch.tensor([2.0 / ws, 2.0 / hs], device=images.device, dtype=images.dtype).view(1, 2, 1) - 1.0
    grid = grid.transpose(1, 2).reshape(-1, height, width, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class MeshEngine:
    """Weight-free reenactment / editing: ``prepare`` a source once, ``render`` target parameters in batches.

    device: "cpu", "cuda" or None (CUDA when available). batch_size: frames per torch call.
    """

    name = "mesh"

    def __init__(self, device: str | torch.device | None = None, batch_size: int = 16,
                 model: FaceModel | None = None) -> None:
        self.device = _default_device(device)
        self.batch_size = max(1, int(batch_size))
        self.model = load_face_model() if model is None else model

    # ------------------------------------------------------------------------------------------- source
    @torch.no_grad()
    def prepare(self, source_image: np.ndarray, source_landmarks: np.ndarray, source_fit: FitResult,
                frame: int = 0) -> PreparedSource:
        """source_image uint8 [S, S, 3] (the crop), source_landmarks [478, 3] crop pixels (as detected),
        source_fit: its fit (T = 1, or frame ``frame`` of a video fit)."""
        img = np.asarray(source_image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"source_image must be uint8 [S, S, 3], got {img.dtype} {img.shape}")
        lm = np.asarray(source_landmarks, np.float32)
        if lm.shape != (478, 3) or not np.isfinite(lm).all():
            raise ValueError(f"source_landmarks must be finite [478, 3], got {lm.shape}")
        if not isinstance(source_fit, FitResult) or source_fit.identity.shape != (478, 3):
            raise ValueError("source_fit must be a FitResult of the 478-point model")
        params = TargetParams.from_fit(source_fit, frame)
        dev = self.device
        identity = torch.as_tensor(source_fit.identity, dtype=torch.float32, device=dev)
        pose = torch.as_tensor(params.pose, device=dev)
        depth = torch.as_tensor(params.depth_offset, device=dev)
        lm_t = torch.as_tensor(lm, device=dev)[None]
        # Residual that makes the model hit the detected landmarks exactly (model frame, cm).
        model_pts = self.model.shape(identity, torch.as_tensor(params.expression, device=dev), None,
                                     torch.as_tensor(params.gaze, device=dev))
        exact = geo.unproject(lm_t, pose, depth) - model_pts  # [1, 478, 3]
        fix = exact[0] - torch.as_tensor(params.residual[0], device=dev)
        face = prepare_source(frames_to_tensor(img, dev), lm_t)
        return PreparedSource(face=face, landmarks=lm, identity=identity, residual=exact[0], residual_fix=fix,
                              params=params, size=int(img.shape[0]), device=dev)

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
        dst = self.target_vertices(prepared, targets)
        mouth_image = None
        if mouth_frames is not None:
            drv = frames_to_tensor(np.asarray(mouth_frames), prepared.device)
            drv_v = torch.as_tensor(np.asarray(mouth_landmarks, np.float32), device=prepared.device)
            maps = mouth_map(dst, drv_v)
            mouth_image = warp_affine(drv, maps, prepared.size, prepared.size)
        out = render_head(prepared.face, dst, mouth_image=mouth_image)
        return out.image, out.changed, dst

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


__all__ = ["EngineOutput", "MeshEngine", "PreparedSource", "mouth_map", "similarity_2d", "warp_affine"]
