"""The default, weight-free engine: the source face as a textured 3-D mesh, posed and rendered per frame.

``prepare`` takes the source crop, its detected 478 landmarks and its face-model fit. The texture coordinates are
the detected landmarks themselves (exact), and the source's residual is re-derived from them, so the model
reproduces the detected landmarks exactly: rendering the source's own parameters gives the source back.

``render`` builds, for each target, the source's face mesh with the target's pose, expression, residual and gaze
(``FaceModel.posed`` with the SOURCE identity; the head's turn from the source's pose drawn times
``MeshConfig.turn_gain``, which makes up for what a warp of one picture shows short: ``drawn_targets``) and
renders it with the stages of :func:`thead.render.render_head`
(z-buffered mesh warp inside the face, dense warp around it, iris layer for gaze, closing lids, inner-mouth
layer: synthesised cavity and teeth, or the driver's mouth), with four additions that real clips showed were
needed (``bench/bench_reenact.py``):

* head proxy: points on the skull around the face turn rigidly with the head and drive the dense flow too, so
  hair and head outline follow a turn (the face mesh alone dragged them too little);
* head over body over background: the person (``thead.face.segment.person_mask``) is split by a head weight
  (``regions.neck_weight``: 1 on the head, fading down the neck) into a head layer, moved by the head's flow,
  and a body layer (neck and shoulders) that stays but for its neck stretching up after a rising head and
  bending after a head that moved far sideways, both over a still copy of the background (premultiplied
  layers, ``thead.render.compose``; identity targets still give the source back). A head that drops or turns
  slides over its own neck and collar instead of dragging the wall beside the jaw down over the shoulders;
  ground the head uncovers shows the background plate (filled along its rows) dragged sideways with the head;
* padded canvas: the render runs on the crop plus a border, the source's own picture around the crop when
  given (``surroundings``), else the crop's mirror image, so the dense flow's taper to zero at the canvas edge
  never squeezes the crop's own border and hair the crop cut off comes in with a moving head;
* symmetry fill: where the target shows a side of the head the source turned away, the render of the source's
  mirror image (flipped about the face, landmarks relabelled by the model's mirror map) is blended in, with a
  per-vertex share from how squarely source and target see the surface, carried over the head beyond the mesh.

Everything is batched in torch (CPU or CUDA); the only Python loop is over batches of ``batch_size`` frames.
The settings are a :class:`MeshConfig` (``config.py``); ``MeshEngine.key`` names them in output cache keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from thead.device import default_device
from thead.runtime import ordered_map

T = TypeVar("T")
U = TypeVar("U")
from thead.engines.mesh.config import MeshConfig
from thead.engines.mesh.regions import (below_head_map, head_proxy_points, mirror_index, mirror_region,
                                        neck_weight)
from thead.engines.motion import MAX_ANGLES_DEG, TargetParams
from thead.face.segment import person_mask
from thead.facemodel import geometry as geo
from thead.facemodel.model import FaceModel, load_face_model
from thead.fitting.result import FitResult
from thead.render import frames_to_tensor, prepare_source, render_head, tensor_to_frames
from thead.render.compose import (body_layer, dilate, inside_picture_fade, outside_fade, past_picture_fade,
                                  premultiplied)
from thead.render.dense_flow import smoothstep
from thead.render.head_render import weighted_flow
from thead.render.images import bar_mask, fill_bars, letterbox_bars
from thead.render.layers import SourceFace, over
from thead.render.masks import blur3, fill_rows, triangle_set_masks
from thead.render.mesh_topology import closed_mesh_triangles
from thead.render.mesh_warp import flow_to_grid, warp_image
from thead.render.mouth import match_mouth_colour, mouth_colour_stats, mouth_map
from thead.render.paste_back import PASTE_FEATHER, changed_region, restore_unchanged, warp_affine
from thead.render.symmetry import (fill_profile, fill_weight_map, flip_columns, flip_points, mesh_visibility,
                                   mirror_weights, mirrored_source, relight_mirror)


# Pixels of canvas rendered around what is output (the crop, a mirror image's box): more than the reach of the
# render's neighbourhood filters (mesh feather 4, then the uncovered ground's dilate and blur 5), so the pixels
# kept are those of a whole-canvas render.
_WINDOW_MARGIN = 12
_JAW_POINTS = (152, 148, 377, 176, 400, 150, 379, 172, 397)  # chin, jaw line and jaw corners (face mesh)


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
    bend_weight [1, 1, H, W]: the same with the longer fade ``neck_bend_fade``: how far down the body layer's neck
    bends after a head that rose or moved far sideways.
    visibility [1, 478]: how squarely the source saw each vertex, and mirrored: the source's mirror image prepared
    the same way (its own face, head points, masks on the flipped canvas), for the symmetry fill (None: off).
    bars [1, 1, S, S]: 1 on black bars framing the crop (``letterbox_bars``), framed [1, 3, S, S]: the source crop
    with them, put back over the output (None: no bars; ``face`` and the masks see the bars filled).
    rest [1, 3, S + 2 margin, S + 2 margin]: the render of the source's own parameters, what every changed region
    is measured against (``MeshEngine`` makes it at the first render that needs one).
    mouth_colour [1, 3]: the colour of the skin around the source's mouth (``thead.render.mouth.mouth_colour_stats``),
    to which a driver's borrowed mouth interior is matched.
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
    bend_weight: torch.Tensor | None = None
    visibility: torch.Tensor | None = None
    mirrored: PreparedSource | None = None
    bars: torch.Tensor | None = None
    framed: torch.Tensor | None = None
    rest: torch.Tensor | None = None  # [1, 3, S, S]: the render of the source's own parameters (made when needed)
    mouth_colour: torch.Tensor | None = None  # [1, 3]: ``mouth_colour_stats`` of the source (skin around the mouth)
    # [1, 1, H, W] over the canvas when it was cut from the picture (``prepare(surroundings=...)``): how much of a
    # render is pasted back there (``inside_picture_fade``: 0 past the picture's edge); None: a mirrored border.
    paste_weight: torch.Tensor | None = None
    # Pixels of canvas around the crop that each render covers (``MeshEngine.for_paste_back``); 0: the crop only.
    margin: int = 0

    @property
    def background_share(self) -> torch.Tensor | None:
        """[1, 3, H, W]: the background's part of the source image, (1 - person) * background."""
        return None if self.person is None else (1.0 - self.person) * self.background

    @cached_property
    def body_layer(self) -> torch.Tensor | None:
        """[1, 4, H, W]: the body (neck, shoulders) as a premultiplied layer (colour, alpha) under the head layer
        (:func:`thead.render.compose.body_layer` of the source image, person mask and ``head_weight``). None
        without a person mask or head weight. Computed once per prepared source."""
        if self.person is None or self.head_weight is None:
            return None
        return body_layer(self.face.image, self.person, self.head_weight, self.background_share)

    @cached_property
    def long_body_layer(self) -> torch.Tensor | None:
        """[1, 4, H, W]: :attr:`body_layer` under the long-edged head weight (``bend_weight``), for a head that
        moved far. None without a person mask or bend weight."""
        if self.person is None or self.bend_weight is None:
            return None
        return body_layer(self.face.image, self.person, self.bend_weight, self.background_share)

    def _edge_share(self, edge: torch.Tensor | None) -> torch.Tensor | None:
        """``edge`` [B] as a [B, 1, 1, 1] blend share, or None when every frame keeps the short edge."""
        if edge is None or self.bend_weight is None or not bool((edge > 0).any()):
            return None
        return edge.view(-1, 1, 1, 1).to(self.bend_weight.dtype)

    def head_weight_at(self, edge: torch.Tensor | None) -> torch.Tensor | None:
        """The head weight [1 or B, 1, H, W] of frames whose head layer's lower edge is ``edge`` [B] of the way
        from ``head_weight``'s short fade to ``bend_weight``'s long one (None: short; batch 1 when all are)."""
        t = self._edge_share(edge)
        return self.head_weight if t is None else torch.lerp(self.head_weight, self.bend_weight, t)

    def body_layer_at(self, edge: torch.Tensor | None) -> torch.Tensor | None:
        """:attr:`body_layer` [1 or B, 4, H, W] under :meth:`head_weight_at`'s weights."""
        t = self._edge_share(edge)
        if t is None or self.body_layer is None:
            return self.body_layer
        return torch.lerp(self.body_layer, self.long_body_layer, t)


@dataclass
class EngineOutput:
    """frames uint8 [B, S', S', 3] with S' = S + 2 margin (the crop, and ``margin`` pixels of the canvas around it
    for a source prepared ``for_paste_back``); changed float32 [B, S', S'] in [0, 1]: where the render differs from
    the source, with a soft rim (``thead.render.paste_back.changed_region``; the ``crop_mask`` for
    :func:`thead.render.paste_back`: 0 where the original picture's own pixels stay); vertices float32
    [B, 478, 3]: the target meshes as drawn (crop pixels, depth; turned by ``MeshConfig.turn_gain``)."""

    frames: np.ndarray
    changed: np.ndarray
    vertices: np.ndarray
    margin: int = 0


class MeshEngine:
    """Weight-free reenactment / editing: ``prepare`` a source once, ``render`` target parameters in batches.

    Parameters
    ----------
    device : str, torch.device or None
        "cpu", "cuda", ... or None (CUDA when available; ``thead.device.default_device``).
    batch_size : int or None
        Frames per torch call; None keeps ``config.batch_size``.
    model : FaceModel or None
        The face model (default: the packaged 478-point model).
    config : MeshConfig or None
        The settings (default: ``MeshConfig()``).
    **settings
        Any ``MeshConfig`` field by name (``symmetry=False``, ``background="warp"``, ...), overriding ``config``'s.

    Attributes
    ----------
    config : MeshConfig
        The settings in use; ``key`` (its ``digest()``) names what this engine renders in output cache keys.
    device : torch.device
        Where it computes.
    """

    name = "mesh"

    def __init__(self, device: str | torch.device | None = None, batch_size: int | None = None,
                 model: FaceModel | None = None, *, config: MeshConfig | None = None, **settings: Any) -> None:
        config = MeshConfig() if config is None else config
        if batch_size is not None:
            settings["batch_size"] = batch_size
        self.config = replace(config, **settings) if settings else config
        self.device = default_device(device)
        self.model = load_face_model() if model is None else model
        self.mirror = torch.as_tensor(self.model.mirror, dtype=torch.long, device=self.device)  # [478]

    @property
    def batch_size(self) -> int:
        """Frames per torch call (``config.batch_size``)."""
        return max(1, int(self.config.batch_size))

    @property
    def key(self) -> str:
        """What this engine renders, for output cache keys: ``config.digest()`` (batch size and device aside)."""
        return self.config.digest()

    # ------------------------------------------------------------------------------------------- source
    def canvas_pad(self, size: int) -> int:
        """Pixels of border around a crop in the render canvas.

        Parameters
        ----------
        size : int
            S, the crop's side in pixels.

        Returns
        -------
        int
            ``round(config.pad_fraction * S)``.
        """
        return int(round(self.config.pad_fraction * size))

    def paste_margin(self, prepared: PreparedSource) -> int:
        """Pixels of canvas around the crop that renders for pasting back cover: the whole canvas border where it
        holds the picture's own surroundings (``prepare(surroundings=...)``), else 0 (a mirrored border is nothing
        to paste; a letterboxed crop is pasted as it is).

        A render covering only the crop is pasted with its changes faded out towards the crop's edge, where
        hair or a shoulder the head carries across that edge would be cross-faded with the original's unmoved
        copy (a smeared wedge of hair over the head, a doubled outline); over the canvas the dense flow has
        tapered to 0 at the canvas's own edge (``dense_backward_flow(border=...)``), so the render there already
        matches the original and the fade-out meets it without a seam."""
        weight, p, s = prepared.paste_weight, prepared.pad, prepared.size
        if weight is None or prepared.bars is not None or p == 0:
            return 0
        ring = weight.clone()
        ring[..., p:p + s, p:p + s] = 0.0
        return p if float(ring.max()) > 0.0 else 0  # (a crop filling its frame: nothing around it to paste)

    def for_paste_back(self, prepared: PreparedSource) -> PreparedSource:
        """``prepared`` rendering ``paste_margin`` pixels of canvas around the crop (``EngineOutput.margin``); the
        same object when that is its margin already. Renders of the crop itself are unchanged by it."""
        margin = self.paste_margin(prepared)
        if margin == prepared.margin:
            return prepared
        return replace(prepared, margin=margin, rest=None)

    @torch.no_grad()
    def prepare(self, source_image: np.ndarray, source_landmarks: np.ndarray, source_fit: FitResult,
                frame: int = 0, person: np.ndarray | None = None,
                surroundings: np.ndarray | None = None, picture: np.ndarray | None = None,
                matte: np.ndarray | None = None) -> PreparedSource:
        """Prepare a source face once for any number of renders.

        Parameters
        ----------
        source_image : np.ndarray
            uint8 [S, S, 3] RGB: the source crop.
        source_landmarks : np.ndarray
            [478, 3] its detected landmarks (crop pixels, as detected; the texture coordinates).
        source_fit : FitResult
            Its fit (T = 1, or a video fit whose frame ``frame`` is the source).
        frame : int
            Which frame of ``source_fit`` the crop is.
        person : np.ndarray or None
            float [S, S] in [0, 1]: a soft person mask of the crop (default: ``thead.face.segment.person_mask``
            when ``config.background == "still"``).
        surroundings : np.ndarray or None
            uint8 [S + 2 p, S + 2 p, 3], p = ``canvas_pad(S)``: the crop with the picture around it
            (``crop_frame`` with ``margin=p``); hair and background the crop cut off then come in from the picture
            when the head moves, instead of from a mirror image of the crop (ignored for a letterboxed crop).
        picture : np.ndarray or None
            float [S + 2 p, S + 2 p] in [0, 1]: where ``surroundings`` show the picture (1) rather than its mirror
            image past the picture's edge (0; ``picture_mask``): the person fades out past the picture's top and
            sides there, as past the crop's edge without surroundings.
        matte : np.ndarray or None
            float32 [S, S] or [S + 2 p, S + 2 p]: ``person_matte(source_image, surroundings)`` computed before (a
            cached copy; the segmentation is then skipped and the result is the same). Overrides ``person``.

        Returns
        -------
        PreparedSource
            The source on the engine's device, ready for ``render``.

        Raises
        ------
        ValueError
            For a crop, landmarks, fit, person mask or surroundings of the wrong kind or shape.
        """
        cfg = self.config
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
            bar_alpha = torch.as_tensor(bar_mask(img.shape[:2], bars), device=dev)[None, None]
            framed = frames_to_tensor(img, dev)
        img, surroundings = self._scene(img, surroundings)
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
        image = frames_to_tensor(img if surroundings is None else surroundings, dev)
        if surroundings is None and pad:
            # Mirrored, not replicated: where the head moves away from a crop edge that cut the hair, the
            # uncovered band then shows plausible hair texture instead of streaks of the edge row.
            image = F.pad(image, (pad, pad, pad, pad), mode="reflect")
        shift = torch.tensor([pad, pad, 0.0], device=dev)
        face = prepare_source(image, lm_t + shift)
        head = head_src = None
        if cfg.head_proxy:
            head = head_proxy_points(identity, cfg)
            head_src = geo.apply_pose(head[None], pose, depth) + shift
        mask = background = None
        if cfg.background == "still":
            mask, background = self._still_background(img, image, lm_t + shift, pad, person, surroundings, picture,
                                                      matte)
        weight = bend = None
        if cfg.neck_follow is not None:
            H, W = image.shape[-2:]
            weight = neck_weight(lm_t + shift, H, W, cfg)
            bend = neck_weight(lm_t + shift, H, W, replace(cfg, neck_fade=cfg.neck_bend_fade))
        prepared = PreparedSource(face=face, landmarks=lm, identity=identity, residual=exact[0], residual_fix=fix,
                                  params=params, size=size, device=dev, pad=pad, head_points=head,
                                  head_source=head_src, person=mask, background=background,
                                  head_weight=weight, bend_weight=bend, bars=bar_alpha, framed=framed,
                                  mouth_colour=mouth_colour_stats(image, lm_t + shift))
        if surroundings is not None and pad > 0:
            shown = np.ones(image.shape[-2:], np.float32) if picture is None else picture
            prepared.paste_weight = inside_picture_fade(shown, PASTE_FEATHER * size).to(dev)
        if cfg.symmetry:
            self._prepare_mirror(prepared, image, lm_t + shift)
        return prepared

    def _scene(self, img: np.ndarray, surroundings: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(the crop, the canvas picture or None) as ``prepare`` renders them: black bars framing the crop filled,
        the crop pasted into the middle of ``surroundings`` (None for a letterboxed crop)."""
        bars = letterbox_bars(img)
        if any(bars):
            # Black bars framing the picture (a letterboxed video) are not part of the scene: the render sees the
            # picture's edge repeated into them (a neck stretching up reads neck, not black) and the bars are put
            # back over every output frame.
            img = fill_bars(img, bars)
        size = int(img.shape[0])
        pad = self.canvas_pad(size)
        if surroundings is not None:
            surroundings = np.asarray(surroundings)
            if surroundings.shape != (size + 2 * pad, size + 2 * pad, 3) or surroundings.dtype != np.uint8:
                raise ValueError(f"surroundings must be uint8 [{size + 2 * pad}, {size + 2 * pad}, 3] (the crop with "
                                 f"{pad} pixels around it), got {surroundings.dtype} {surroundings.shape}")
            if any(bars):
                surroundings = None  # the bars frame the picture: what lies past them is not the scene
            else:
                surroundings = surroundings.copy()
                surroundings[pad:pad + size, pad:pad + size] = img  # the crop itself is the source, to the level
        return img, surroundings

    def person_matte(self, source_image: np.ndarray, surroundings: np.ndarray | None = None) -> np.ndarray | None:
        """The soft person mask ``prepare`` segments (``thead.face.segment.person_mask``: the expensive, deterministic
        part of a prepare), to be cached and given back as ``prepare(..., matte=...)``.

        Parameters
        ----------
        source_image : np.ndarray
            uint8 [S, S, 3], as for ``prepare``.
        surroundings : np.ndarray or None
            uint8 [S + 2 p, S + 2 p, 3], as for ``prepare``.

        Returns
        -------
        np.ndarray or None
            float32 [S, S] (no usable surroundings) or [S + 2 p, S + 2 p] in [0, 1]; None when
            ``config.background`` is not ``"still"`` (no segmentation).
        """
        if self.config.background != "still":
            return None
        img, surr = self._scene(np.asarray(source_image), surroundings)
        return self._person_matte(img, None, surr, self.canvas_pad(int(img.shape[0])))

    def _person_matte(self, crop: np.ndarray, person: np.ndarray | None, surroundings: np.ndarray | None,
                      pad: int) -> np.ndarray:
        """float32 person mask of the crop [S, S], or of the canvas [S + 2 pad]^2 with usable surroundings."""
        cfg = self.config
        m = person_mask(crop) if person is None else np.asarray(person, np.float32)
        if m.shape != crop.shape[:2]:
            raise ValueError(f"person mask must be [{crop.shape[0]}, {crop.shape[1]}], got {m.shape}")
        if surroundings is not None and pad > 0:
            # The picture around the crop is segmented too; the crop's own, finer mask takes over inside the crop
            # over a band of ``surround_blend`` of its side (no seam where the two segmentations differ).
            around = person_mask(surroundings)
            S = crop.shape[0]
            edge = np.minimum(np.arange(S) + 0.5, S - 0.5 - np.arange(S))  # pixels from the crop's edge
            w = np.clip(np.minimum(edge[:, None], edge[None, :]) / max(cfg.surround_blend * S, 1.0), 0.0, 1.0)
            inner = around[pad:pad + S, pad:pad + S]
            around[pad:pad + S, pad:pad + S] = w * m + (1.0 - w) * inner
            m = around
        return m

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
                                    head_weight=flip(prepared.head_weight), bend_weight=flip(prepared.bend_weight),
                                    visibility=None, mirrored=None)

    def _still_background(self, crop: np.ndarray, canvas: torch.Tensor, vertices: torch.Tensor, pad: int,
                          person: np.ndarray | None, surroundings: np.ndarray | None = None,
                          picture: np.ndarray | None = None,
                          matte: np.ndarray | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(person mask [1, 1, H, W], background plate [1, 3, H, W]) on the canvas, or (None, None) when the
        segmentation misses the face (then the dense flow moves the background as in ``background="warp"``).
        surroundings: the canvas as a uint8 picture (the crop's real surroundings), segmented around the crop;
        picture: where it shows the picture rather than its mirror image (used only with surroundings)."""
        cfg = self.config
        dev = canvas.device
        whole = surroundings is not None and pad > 0
        if matte is None:
            m = self._person_matte(crop, person, surroundings, pad)
        else:
            m = np.asarray(matte, np.float32)
            side = crop.shape[0] + 2 * pad if whole else crop.shape[0]
            if m.shape != (side, side):
                raise ValueError(f"matte must be [{side}, {side}], got {m.shape}")
        mask = torch.as_tensor(m, device=dev)[None, None]
        if pad and not whole:
            mask = F.pad(mask, (pad, pad, pad, pad), mode="reflect")  # as the canvas: the plate's hole fits it
        H, W = canvas.shape[-2:]
        face = triangle_set_masks(vertices, [closed_mesh_triangles()], H, W)
        covered = float((mask * face).sum() / face.sum().clamp(min=1.0))
        if covered < 0.8:
            return None, None
        # A crisper matte: fewer half-person pixels whose background share has to come from the plate's guess.
        lo, hi = cfg.matte_range
        some_person = (mask > cfg.plate_hole_from) | (face > 0.0)
        mask = torch.maximum(smoothstep((mask - lo) / (hi - lo)), face)
        # Background plate: the source wherever the segmentation sees no person (a margin of ``plate_margin`` off
        # the least share ``plate_hole_from``), elsewhere each row's gap filled from the background at its two
        # ends (``fill_rows``: the wall's own colour and horizontal lines run on through the person's place),
        # smoothed along the columns (``MeshConfig.plate_column_blur``).
        # The compositing subtracts (1 - matte) * plate from the warped source, so the plate must equal the source
        # wherever the matte says "background".
        known = 1.0 - dilate(some_person.float(), max(1, int(round(cfg.plate_margin * H))))
        plate = fill_rows(canvas, known, column_blur=int(round(cfg.plate_column_blur * H)))
        if whole and picture is not None:
            mask = mask * past_picture_fade(picture, cfg.edge_fade * crop.shape[0]).to(dev)
        if pad and not whole:
            # Past the crop's edge nobody knows where the person ends: the matte (not the plate's hole) fades out
            # over ``edge_fade`` of the crop side, so hair cut by the crop's top edge ends softly when the head moves
            # down, instead of being stretched out of the mirrored border.
            mask = mask * outside_fade(crop.shape[0], pad, cfg.edge_fade, dev)
        return mask, plate

    # ------------------------------------------------------------------------------------------- targets
    @torch.no_grad()
    def target_vertices(self, prepared: PreparedSource, targets: TargetParams) -> torch.Tensor:
        """The source's face mesh at each target.

        Parameters
        ----------
        prepared : PreparedSource
            The source (its identity and residual fix are used).
        targets : TargetParams
            B targets (pose, expression, residual, gaze, depth offset).

        Returns
        -------
        torch.Tensor
            float32 [B, 478, 3] on the engine's device: crop pixels x, y and depth.
        """
        dev = prepared.device
        t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=dev)  # noqa: E731
        residual = t(targets.residual) + prepared.residual_fix
        return self.model.posed(t(targets.pose), prepared.identity, t(targets.expression), residual,
                                t(targets.gaze), t(targets.depth_offset))

    def drawn_targets(self, prepared: PreparedSource, targets: TargetParams) -> TargetParams:
        """``targets`` with the head turned as this engine draws it (``MeshConfig.turn_gain``).

        Parameters
        ----------
        prepared : PreparedSource
            The source; its own pose is where the turn is measured from.
        targets : TargetParams
            B targets as asked.

        Returns
        -------
        TargetParams
            The same targets with yaw, pitch and roll = the source's + gain x (asked - source's) (radians), the
            extra turn limited to ``MAX_ANGLES_DEG``; ``targets`` itself when every gain is 1.
        """
        gain = np.asarray(self.config.turn_gain, np.float64)
        if np.all(gain == 1.0):
            return targets
        own = np.asarray(prepared.params.pose[0, :3], np.float64)
        pose = np.array(targets.pose, np.float64)
        asked = pose[:, :3]
        limit = np.radians(np.asarray(MAX_ANGLES_DEG))
        pose[:, :3] = np.clip(own + gain * (asked - own), np.minimum(-limit, asked), np.maximum(limit, asked))
        return replace(targets, pose=pose.astype(np.float32))

    @torch.no_grad()
    def _render_batch(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None,
                      mouth_landmarks: np.ndarray | None, with_changed: bool = True, rest_fix: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(images [B, 3, S, S], changed [B, 1, S, S] (None unless ``with_changed``), target vertices [B, 478, 3]
        crop pixels). rest_fix: False renders without ``restore_unchanged`` (and without changed regions)."""
        dev, pad, size = prepared.device, prepared.pad, prepared.size
        targets = self.drawn_targets(prepared, targets)
        dst = self.target_vertices(prepared, targets)
        B = dst.shape[0]
        mouth_image = None
        if mouth_frames is not None:
            drv = frames_to_tensor(np.asarray(mouth_frames), dev)
            drv_v = torch.as_tensor(np.asarray(mouth_landmarks, np.float32), device=dev)
            mouth_image = warp_affine(drv, mouth_map(dst, drv_v), size, size)
            if prepared.mouth_colour is not None:  # the driver's mouth in the source's colours and light
                mouth_image = match_mouth_colour(mouth_image, mouth_colour_stats(drv, drv_v), prepared.mouth_colour)
            if pad:
                mouth_image = F.pad(mouth_image, (pad, pad, pad, pad), mode="replicate")
        shift = torch.tensor([pad, pad, 0.0], device=dev)
        dst_canvas = dst + shift
        # The target mesh at the source's own gaze: the iris layer scales the move the target's gaze makes from it
        # (``MeshConfig.gaze_gain``), not the shift a head turn gives an iris in its eye.
        gaze_rest = None
        if tuple(self.config.gaze_gain) != (1.0, 1.0):
            own = np.repeat(np.asarray(prepared.params.gaze[:1], np.float32), B, 0)
            gaze_rest = self.target_vertices(prepared, replace(targets, gaze=own)) + shift
        dst_head = None
        if prepared.head_points is not None:
            pose = torch.as_tensor(targets.pose, dtype=torch.float32, device=dev)
            depth = torch.as_tensor(targets.depth_offset, dtype=torch.float32, device=dev)
            dst_head = (geo.apply_pose(prepared.head_points.expand(B, -1, -1), pose, depth) + shift)[..., :2]
        edge = self._neck_edge(prepared, targets)
        # Only the crop is output: render the window of the canvas that holds it plus a margin wider than the
        # reach of the render's neighbourhood filters (feather, dilate, blurs), the same pixels as a whole-canvas
        # render there.
        canvas = prepared.face.image.shape[-1]
        m = prepared.margin
        lo, hi = max(0, pad - m - _WINDOW_MARGIN), min(canvas, pad + size + m + _WINDOW_MARGIN)
        window = (lo, lo, hi - lo, hi - lo)
        if mouth_image is not None:
            mouth_image = mouth_image[..., lo:hi, lo:hi]
        image = self._render_source(prepared, prepared, dst_canvas, dst_head, mouth_image, window, edge, gaze_rest)
        if prepared.mirrored is not None:
            weights = mirror_weights(prepared.visibility, dst_canvas, self.mirror)
            side, profile = fill_profile(dst_canvas, weights)
            # Frames that use the mirror image.
            need = torch.nonzero(profile[:, -1] > self.config.min_mirror_share).squeeze(1)
            if need.numel():
                H, W = image.shape[-2:]
                dst_n = dst_canvas[need]
                dst_w = dst_n - torch.tensor([lo, lo, 0.0], device=dev)  # window pixels
                share = (fill_weight_map(dst_w, weights[need], H, W, (side[need], profile[need]))
                         * mirror_region(dst_w, H, W, self.config))
                # The mirror image is rendered only over the box where its share is not 0 (plus the margin).
                rows = torch.nonzero((share > 0).any(0).any(0).any(1)).squeeze(1)
                cols = torch.nonzero((share > 0).any(0).any(0).any(0)).squeeze(1)
                if rows.numel():
                    r0 = max(0, int(rows[0]) - _WINDOW_MARGIN)
                    r1 = min(H, int(rows[-1]) + 1 + _WINDOW_MARGIN)
                    c0 = max(0, int(cols[0]) - _WINDOW_MARGIN)
                    c1 = min(W, int(cols[-1]) + 1 + _WINDOW_MARGIN)
                    box = (slice(None), slice(None), slice(r0, r1), slice(c0, c1))
                    image_m = self._render_source(
                        prepared.mirrored, prepared, dst_n, None if dst_head is None else dst_head[need],
                        None if mouth_image is None else mouth_image[need][box], (lo + r0, lo + c0, r1 - r0, c1 - c0),
                        None if edge is None else edge[need], None if gaze_rest is None else gaze_rest[need])
                    image_n = image[need]
                    image_n[box] = over(image_n[box], image_m, share[box])
                    image = image.index_copy(0, need, image_n)
        pad = pad - lo  # the crop in the window
        image = image[..., pad - m:pad + size + m, pad - m:pad + size + m]
        return self._finish(prepared, image, dst, with_changed, rest_fix)

    @staticmethod
    def _source_crop(prepared: PreparedSource) -> torch.Tensor:
        """[1, 3, S + 2 margin, S + 2 margin]: the source crop (and ``margin`` pixels of canvas around it) as renders
        are restored to it (framed when letterboxed)."""
        if prepared.framed is not None:
            return prepared.framed
        p, s, m = prepared.pad, prepared.size, prepared.margin
        return prepared.face.image[..., p - m:p + s + m, p - m:p + s + m]

    def _finish(self, prepared: PreparedSource, image: torch.Tensor, dst: torch.Tensor, with_changed: bool,
                rest_fix: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The last steps of a batch render of crops ``image`` [B, 3, S, S]: letterbox bars put back; then, with
        ``rest_fix``, the source's own pixels restored where the render is still the source's own render, and with
        ``with_changed`` the changed region. Returns ``_render_batch``'s (images, changed or None, dst)."""
        if prepared.bars is not None:
            image = torch.lerp(image, prepared.framed, prepared.bars)
        if not rest_fix:
            return image, None, dst
        # Where a target leaves the render as the source's own parameters render it, the source's own pixels: the
        # render of the source is not the source exactly (soft matte edges whose background came from the plate's
        # guess, the iris layer), and those differences would flash up wherever a little motion moves a pixel. The
        # source's difference from its own render fades out as the render changes.
        source = self._source_crop(prepared)
        image = restore_unchanged(image, self.rest_render(prepared), source)
        # What the paste-back takes from the render: only the pixels that differ from the source (and a soft rim
        # around them); the rest stays the original frame's own, at the original's resolution.
        changed = None
        if with_changed:
            changed = changed_region(image, source)
            if prepared.margin:  # past the picture's edge there is nothing to paste into
                p, s, m = prepared.pad, prepared.size, prepared.margin
                changed = changed * prepared.paste_weight[..., p - m:p + s + m, p - m:p + s + m]
        return image, changed, dst

    def _neck_edge(self, prepared: PreparedSource, targets: TargetParams) -> torch.Tensor | None:
        """[B] in [0, 1]: how far each target's head layer lengthens its lower edge, from ``neck_fade`` (0) to
        ``neck_bend_fade`` (1), by how far the head's rigid motion carries the jaw (the source's chin and jaw
        corners, without the expression: an open mouth is no head motion) as a share of the crop side, over
        ``neck_fade_motion``. None without a bend weight."""
        if prepared.bend_weight is None:
            return None
        dev = prepared.device
        jaw = prepared.identity[torch.as_tensor(_JAW_POINTS, device=dev)].float()  # [J, 3] model frame, cm
        pose = torch.as_tensor(targets.pose, dtype=torch.float32, device=dev)
        depth = torch.as_tensor(targets.depth_offset, dtype=torch.float32, device=dev)
        src_pose = torch.as_tensor(prepared.params.pose[:1], dtype=torch.float32, device=dev)
        src_depth = torch.as_tensor(prepared.params.depth_offset[:1], dtype=torch.float32, device=dev)
        there = geo.apply_pose(jaw.expand(pose.shape[0], -1, -1), pose, depth)[..., :2]
        here = geo.apply_pose(jaw[None], src_pose, src_depth)[..., :2]
        moved = (there - here).norm(dim=-1).amax(1) / prepared.size
        lo, hi = self.config.neck_fade_motion
        return smoothstep((moved - lo) / max(hi - lo, 1e-6))

    def _render_source(self, source: PreparedSource, still: PreparedSource, dst: torch.Tensor,
                       dst_head: torch.Tensor | None, mouth_image: torch.Tensor | None,
                       window: tuple[int, int, int, int], edge: torch.Tensor | None = None,
                       gaze_rest: torch.Tensor | None = None) -> torch.Tensor:
        """Render ``source`` (the prepared source or its mirror image) at target meshes dst [B, 478, 3] (canvas
        pixels) over ``still``'s body and background: image [B, 3, h, w] over the window
        (top, left, h, w) of the canvas (mouth_image [B, 3, h, w] too). dst_head [B, K, 2]: where the head points
        go (None: no head proxy). gaze_rest [B, 478, 3]: the targets at the source's own gaze (canvas pixels), the
        iris layer's reference for ``MeshConfig.gaze_gain``."""
        cfg = self.config
        B = dst.shape[0]
        top, left, h, w = window
        origin = (left, top)
        here = lambda x: x[..., top:top + h, left:left + w]  # noqa: E731  (target-frame pixels of a canvas map)
        extra = None
        if source.head_source is not None and dst_head is not None:
            extra = (source.head_source[..., :2].expand(B, -1, -1), dst_head)
        layered = source.person is not None and still.person is not None
        weight = None
        if not layered and source.head_weight is not None and cfg.neck_follow is not None:
            weight = cfg.neck_follow + (1.0 - cfg.neck_follow) * source.head_weight
        # The mesh's own map to its edge along the jaw and chin (``MeshConfig.jaw_mesh_flow``).
        jaw = below_head_map(dst, h, w, cfg, origin) if cfg.jaw_mesh_flow else None
        out = render_head(source.face, dst, mouth_image=mouth_image, falloff=cfg.falloff,
                          extra_points=extra, source_weight=weight, window=window, gaze_gain=cfg.gaze_gain,
                          gaze_rest=gaze_rest, lip_border=cfg.lip_border, edge_flow=jaw,
                          inner_lip=cfg.inner_lip_edge)
        mesh_mask = out.mesh.mask
        image = out.image
        if layered:
            # Layers, back to front: the still background; the body (neck and shoulders, ``body_layer``; still
            # but for its neck stretching and bending after the head); the head (the person times the head weight,
            # moved by the head's flow; the rendered face inside the mesh). Premultiplied: the warped person is the
            # warped source minus its warped (1 - P) * background. Identity targets give the source back exactly.
            # The head layer's lower edge is short for a sway or a turn (one neck, not two copies cross-faded a
            # few pixels apart) and lengthens as the head moves far (``edge``, ``_neck_edge``), where a short edge
            # would leave a blur of chin over the collar.
            head_w = source.head_weight_at(edge)
            still_head_w = head_w if still is source else still.head_weight_at(edge)
            body = still.body_layer_at(edge)
            head = torch.ones_like(source.person) if head_w is None else head_w
            n = head.shape[0]  # 1 (warp_image broadcasts it over the frames) unless a frame lengthens its edge
            layers = torch.cat([source.person.expand(n, -1, -1, -1), source.background_share.expand(n, -1, -1, -1),
                                head], 1)
            both = warp_image(layers, out.grid)
            head_t = both[:, 4:5] * (1.0 - mesh_mask)
            alpha = mesh_mask + head_t * both[:, :1]
            colour = mesh_mask * image + head_t * premultiplied(image, both[:, :1], both[:, 1:4])
            size = tuple(source.face.image.shape[-2:])  # the canvas
            if body is not None:
                # The body stays, but where the head rises away from it the neck stretches up after it (the head's
                # flow fading down the neck, its upward part only): a rising head never leaves its collar and the
                # top of the neck showing through its own soft lower edge, and a dropping one still slides over.
                follow = cfg.neck_follow or 0.0
                # (Over the neck's length, ``bend_weight``: longer than the head layer's own soft lower edge.)
                pull = weighted_flow(out.flow, follow + (1.0 - follow) * still.bend_weight, origin=origin)
                # Sideways it bends: none of a small sway (up to half ``neck_slack`` of the crop side), all of a
                # move past 1.5 times it (no still neck left showing beside a jaw that moved far), eased between.
                slack = cfg.neck_slack * still.size
                px = pull[:, :1]
                px = follow * px + (1.0 - follow) * px * smoothstep((px.abs() - 0.5 * slack) / slack)
                pull = torch.cat([px, pull[:, 1:].clamp(min=0.0)], 1)
                body = warp_image(body, flow_to_grid(pull, size, origin))
            # Background: still, except where the head uncovers ground the source never showed (the source's head,
            # now neither head nor body): there the plate (filled along its rows, so a shelf or a horizon runs on
            # behind the head) is dragged sideways with the head, bringing the real wall beside the old head in
            # rather than the plate's smooth fill, and never up or down across the plate's horizontal lines.
            cover = alpha if body is None else alpha + (1.0 - alpha) * body[:, 3:]
            band = max(1, int(round(cfg.background_band * size[0])))
            person = here(still.person)
            head_s = person if still_head_w is None else person * here(still_head_w)
            uncovered = (head_s - cover) > 0.05
            background = here(still.background).expand(B, -1, -1, -1)
            # Only over the box holding the uncovered ground and its reach (dilate, blur, one more pixel): the
            # plate stays as it is elsewhere.
            rows = torch.nonzero(uncovered.any(3).any(1).any(0)).squeeze(1)
            if rows.numel():
                cols = torch.nonzero(uncovered.any(2).any(1).any(0)).squeeze(1)
                reach = band + 3
                r0, r1 = max(0, int(rows[0]) - reach), min(h, int(rows[-1]) + 1 + reach)
                c0, c1 = max(0, int(cols[0]) - reach), min(w, int(cols[-1]) + 1 + reach)
                box = (slice(None), slice(None), slice(r0, r1), slice(c0, c1))
                near = blur3(dilate(uncovered[box].to(image.dtype), band), 2).clamp(0.0, 1.0)
                sideways = torch.cat([out.flow[box][:, :1], torch.zeros_like(out.flow[box][:, 1:])], 1)
                dragged = warp_image(source.background, flow_to_grid(sideways, size, (left + c0, top + r0)))
                plate = background[box]
                background = background.clone()
                background[box] = torch.lerp(plate, dragged, near)
            if body is not None:
                background = body[:, :3] + (1.0 - body[:, 3:]) * background
            image = colour + (1.0 - alpha) * background
        return image

    @torch.no_grad()
    def rest_render(self, prepared: PreparedSource) -> torch.Tensor:
        """[1, 3, S, S]: the render of the source's own parameters (``prepared.rest``), made at the first call."""
        if prepared.rest is None:
            prepared.rest = self._render_batch(prepared, prepared.params, None, None, False, False)[0]
        return prepared.rest

    def _batches(self, n: int) -> Iterator[slice]:
        step = self.config.batch_size
        for start in range(0, n, step):
            yield slice(start, min(start + step, n))

    def render_workers(self, batches: int) -> int:
        """How many of ``batches`` batches render at once: ``config.workers`` (None: torch's thread count) on the
        CPU, at most ``batches``; 1 on CUDA."""
        if self.device.type != "cpu" or batches < 2:
            return 1
        wanted = self.config.workers if self.config.workers is not None else torch.get_num_threads()
        return max(1, min(int(wanted), batches))

    def map_batches(self, prepared: PreparedSource, render: Callable[[T], U], items: Iterable[T], batches: int
                    ) -> Iterator[U]:
        """``render(item)`` for each of ``batches`` items of one prepared source (render work on batches), in order.

        With ``render_workers(batches)`` > 1, that many run at once (``thead.runtime.ordered_map``: each in its own
        thread with one torch thread), the source's own render (``rest_render``) made first so the workers share
        it; ``items`` is read in the calling thread."""
        workers = self.render_workers(batches)
        if workers > 1:
            self.rest_render(prepared)
        yield from ordered_map(render, items, workers, name="thead-render")

    def _map_batches(self, prepared: PreparedSource, jobs: Iterable[tuple[TargetParams, np.ndarray | None,
                                                                          np.ndarray | None]],
                     batches: int, with_changed: bool = True
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """``_render_batch`` of each (targets, mouth frames, mouth landmarks) job, in order (``map_batches``)."""
        yield from self.map_batches(prepared, lambda job: self._render_batch(prepared, *job, with_changed), jobs,
                                    batches)

    @staticmethod
    def _check_mouth(targets: TargetParams, mouth_frames: np.ndarray | None,
                     mouth_landmarks: np.ndarray | None) -> None:
        if mouth_frames is None:
            return
        if mouth_landmarks is None:
            raise ValueError("mouth_frames need mouth_landmarks (the driver crop's landmarks)")
        if len(mouth_frames) != len(targets) or len(mouth_landmarks) != len(targets):
            raise ValueError(f"{len(targets)} targets but {len(mouth_frames)} mouth frames and "
                             f"{len(mouth_landmarks)} mouth landmark sets")
        shape = tuple(np.shape(mouth_frames)[1:])
        if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 1:
            raise ValueError(f"mouth_frames must be [B, h, w, 3] pictures of the driver's mouth, got {shape}")

    def render(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None = None,
               mouth_landmarks: np.ndarray | None = None) -> np.ndarray:
        """The source at each target.

        Parameters
        ----------
        prepared : PreparedSource
            The source (``prepare``).
        targets : TargetParams
            B targets.
        mouth_frames : np.ndarray or None
            uint8 [B, h, w, 3]: pictures of the driver's mouth (its crops, or any part of them holding the lips and
            the skin around them, as ``thead reenact`` cuts them), whose inner mouth (teeth, tongue) is
            carried into the target mouth (``thead.render.mouth.mouth_map``); default: the source's interior riding
            with the lips plus a synthesised cavity and teeth.
        mouth_landmarks : np.ndarray or None
            [B, 478, 3]: the driver's landmarks in those pictures' pixels; needed with ``mouth_frames``.

        Returns
        -------
        np.ndarray
            uint8 [B, S, S, 3] RGB frames.
        """
        return self.render_full(prepared, targets, mouth_frames, mouth_landmarks).frames

    def render_full(self, prepared: PreparedSource, targets: TargetParams, mouth_frames: np.ndarray | None = None,
                    mouth_landmarks: np.ndarray | None = None) -> EngineOutput:
        """``render`` plus the changed-region masks and target meshes as drawn (for pasting back into full frames).

        Parameters
        ----------
        prepared, targets, mouth_frames, mouth_landmarks
            As for ``render``.

        Returns
        -------
        EngineOutput
            frames uint8 [B, S, S, 3], changed float32 [B, S, S] in [0, 1], vertices float32 [B, 478, 3].
        """
        self._check_mouth(targets, mouth_frames, mouth_landmarks)
        frames, changed, verts = [], [], []
        slices = list(self._batches(len(targets)))
        jobs = ((targets[sl], None if mouth_frames is None else mouth_frames[sl],
                 None if mouth_landmarks is None else mouth_landmarks[sl]) for sl in slices)
        for img, ch, dst in self._map_batches(prepared, jobs, len(slices)):
            frames.append(tensor_to_frames(img))
            changed.append(ch[:, 0].float().cpu().numpy())
            verts.append(dst.float().cpu().numpy())
        s, m = prepared.size + 2 * prepared.margin, prepared.margin
        if not frames:
            return EngineOutput(np.zeros((0, s, s, 3), np.uint8), np.zeros((0, s, s), np.float32),
                                np.zeros((0, 478, 3), np.float32), m)
        return EngineOutput(np.concatenate(frames), np.concatenate(changed), np.concatenate(verts), m)

    def render_frames(self, prepared: PreparedSource, targets: TargetParams,
                      mouth: Iterable[tuple[np.ndarray, np.ndarray]] | None = None) -> Iterator[np.ndarray]:
        """``render`` streamed batch by batch, for long target sequences.

        Parameters
        ----------
        prepared : PreparedSource
            The source (``prepare``).
        targets : TargetParams
            The targets.
        mouth : iterable of (np.ndarray, np.ndarray) or None
            Per target frame, (the driver's crop uint8 [S, S, 3], its landmarks [478, 3] crop pixels), read lazily
            batch by batch (e.g. ``zip(iter_frames(crop.mp4), crop_landmarks)``); None: the source's own mouth.

        Yields
        ------
        np.ndarray
            uint8 [b, S, S, 3] RGB frames, b <= ``config.batch_size``, in target order.
        """
        for out in self.render_stream(prepared, targets, mouth, with_changed=False):
            yield out.frames

    def render_stream(self, prepared: PreparedSource, targets: TargetParams,
                      mouth: Iterable[tuple[np.ndarray, np.ndarray]] | None = None, with_changed: bool = True
                      ) -> Iterator[EngineOutput]:
        """``render_full`` streamed batch by batch (``render_frames`` with the changed regions, for pasting back).

        Parameters
        ----------
        prepared, targets, mouth
            As for ``render_frames``.
        with_changed : bool
            False: skip the changed regions (``changed`` is then an empty [b, 0, 0] array).

        Yields
        ------
        EngineOutput
            Of b <= ``config.batch_size`` targets, in target order.
        """
        mouth_iter = None if mouth is None else iter(mouth)
        slices = list(self._batches(len(targets)))

        def jobs() -> Iterator[tuple[TargetParams, np.ndarray | None, np.ndarray | None]]:
            for sl in slices:
                batch = targets[sl]
                m_frames = m_lm = None
                if mouth_iter is not None:
                    pairs = [next(mouth_iter) for _ in range(len(batch))]
                    m_frames = np.stack([p[0] for p in pairs])
                    m_lm = np.stack([np.asarray(p[1], np.float32) for p in pairs])
                    self._check_mouth(batch, m_frames, m_lm)
                yield batch, m_frames, m_lm

        for img, ch, dst in self._map_batches(prepared, jobs(), len(slices), with_changed):
            changed = np.zeros((img.shape[0], 0, 0), np.float32) if ch is None else ch[:, 0].float().cpu().numpy()
            yield EngineOutput(tensor_to_frames(img), changed, dst.float().cpu().numpy(), prepared.margin)


__all__ = ["EngineOutput", "MeshEngine", "PreparedSource"]
