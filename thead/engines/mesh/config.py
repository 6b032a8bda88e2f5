"""The mesh engine's settings: one frozen ``MeshConfig``, whose ``digest()`` is part of every output's cache key.

Lengths in the face's own frame are in eyes-to-chin distances (``HEAD_ELLIPSE``-style tuples), model-frame
lengths in centimetres, image lengths as fractions of the crop or canvas side, as each field says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields

# Bump when a change to the engine's code changes what it renders with the same settings, so that outputs made by
# an older engine are redone rather than skipped as current (settings changes are in the digest already).
CODE_REVISION = 27  # 27: pasted-back renders cover the canvas around the crop
BACKGROUNDS = ("still", "warp")


def _pair(value: object) -> tuple[float, ...]:
    return tuple(float(v) for v in value)  # type: ignore[union-attr]


@dataclass(frozen=True)
class MeshConfig:
    """Settings of :class:`thead.engines.mesh.MeshEngine` (what it renders, and how many frames per torch call).

    Attributes
    ----------
    batch_size : int
        Frames per torch call (values below 1 count as 1). Not part of ``digest()``: renders are the same for
        every batch size.
    workers : int or None
        Batches rendered at once on the CPU, each by its own thread with one torch thread (None: as many as torch
        has threads; 1: one batch at a time with torch's threads inside each operation). The render is a long
        chain of small operations that one torch thread per batch keeps busier than two threads per operation
        (on 2 cores 19 ms a frame against 23-25; README, Benchmarks). Ignored on CUDA. Not part of ``digest()``:
        renders are the same bytes.
    symmetry : bool
        Where a target shows what the source hid or saw edge-on (a cheek, ear and hair turned away), blend in the
        render of the source's mirror image (``thead.render.symmetry``).
    head_proxy : bool
        Skull points around the face turn with the head and move the hair and head outline with it.
    pad_fraction : float
        The render canvas is the crop plus this fraction of its side on each edge (negative counts as 0), so the
        dense flow's taper to zero at the canvas border never squeezes the crop's own border rows.
    falloff : float
        The dense flow reaches zero this many face sizes away from the driving points.
    background : str
        "still": the person (head, hair, body; segmented in the source) moves over a still copy of the
        background whose uncovered parts are filled from the surroundings; "warp": the dense flow moves everything
        near the head.
    neck_follow : float or None
        Share of the head's motion the shoulders take (below ``neck_weight``'s fade; with a person mask the body
        layer's neck stretches up after a rising head from there, and bends after sideways motion beyond
        ``neck_slack``). None: no head/body split, the dense flow moves them as ``render_head`` does.
    head_proxy_centre : (float, float)
        Head proxy: the upper face-oval points (above ``head_proxy_max_y``, i.e. not the jaw) are moved outwards in
        x, y about this model-frame point (cm) ...
    head_proxy_rings : tuple of (float, float)
        ... once per ring, by (x-y scale, extra depth in cm).
    head_proxy_max_y : float
        Model-frame y (cm, down positive) below which face-oval points (the jaw) are left out of the proxy.
    head_ellipse : (float, float, float)
        The head ellipse in the face's own frame (``head_ellipse_coords``): centre v, half width, half height, in
        eyes-to-chin distances, v from the eyes towards the chin.
    head_ellipse_fade_from : (float, float)
        The gate (v from, v to) below which neck and shoulders are told apart from the head (``below_head``).
    neck_fade : float
        Below the gate, the head weight falls from 1 on the head ellipse to 0 this many ellipse radii outside it:
        the head layer's soft lower edge over the neck (short: where the two layers cross-fade, a head that moved
        shows two necks a few pixels apart, a brooch twice).
    neck_bend_fade : float
        ... and the weight by which the body layer's neck bends after a head that rose or moved far sideways falls
        to 0 over this many radii (the neck bends over its length).
    neck_fade_motion : (float, float)
        Head motion (how far the head's rigid motion carries the jaw, as a fraction of the crop side) over which the
        head layer's lower edge lengthens from ``neck_fade`` to ``neck_bend_fade``: a sway or a 20-degree turn
        (~0.045) keeps the short edge, a head that moves far off its collar gets the long one.
    neck_slack : float
        Sideways head motion (fraction of the crop side) about which the neck starts to go along: none of a
        motion below half of it, all of one beyond 1.5 times it.
    matte_range : (float, float)
        The segmentation's soft person mask is mapped through a smoothstep over this range (crisper edges).
    plate_margin : float
        The background plate keeps the source up to this fraction of the canvas side off its hole ...
    plate_hole_from : float
        ... which covers every pixel the segmentation gives more than this share of person (read before
        ``matte_range`` makes the matte crisper): a hair's soft fringe left in the plate was dragged sideways with
        the head into the ground it uncovers, torn copies of it beside the head (s11.jpg's pigtails against a dark
        wall). Flyaway strands the segmentation gives no share at all stay in the plate (d3).
    plate_column_blur : float
        The background plate's fill (each row's gap across the person's place, filled between its two ends) is
        smoothed along the columns by a tent of this half-width, as a fraction of the canvas height. Where the
        ground a moving head uncovers is a diagonal pattern or the matte's edge is ragged, the rows' ends change
        from one row to the next and the fill read as thin horizontal streaks (WDA's flag beside the neck, every
        frame from 60 on); smoothed, it reads as the out-of-focus ground it stands for.
    min_mirror_share : float
        The mirror image is rendered only for frames whose largest symmetry share exceeds this.
    mirror_region : (float, float)
        The symmetry fill acts on the head: its share fades from 1 to 0 between these head-ellipse radii ...
    mirror_neck : (float, float)
        ... and below the gate (neck and clothes, which are not mirrored) between these radii.
    background_band : float
        Ground the moved head uncovers, and this fraction of the canvas side around it, shows the background
        dragged sideways with the head; elsewhere the background stands still.
    edge_fade : float
        Past the crop's edges (not the bottom), or past the picture's, the person matte fades out over this
        fraction of the crop side.
    surround_blend : float
        With the crop's real surroundings, their person mask blends into the crop's own over this fraction of the
        crop side.
    gaze_gain : (float, float)
        The iris is drawn with the move the target's gaze makes times these, along the eye's corner line and
        across it (``thead.render.eyes.eye_layer``; measured from the target mesh at the source's own gaze, so the
        shift a head turn gives an iris in its eye is not scaled). MediaPipe reads a look sideways short (the real
        frames show the iris further out than its landmarks), so an iris drawn at the driver's iris points reads
        back at 0.67-0.88 of the driver's gaze yaw on three of the shared clips (WDA 0.72 and 0.99 per eye); 1.2
        along brings d0, d3 and d12 to 0.82-1.0 and lowers their self-reenactment gaze error (d3 8.84 -> 8.18
        degrees) without raising WDA's. Across (up and down, where the lids follow the eye), a gain raised WDA's
        pitch error (1.24 -> 1.81): none.
    lip_border : float
        Gain of the outer-lip contour's correction towards the vermilion border as the mouth opens, applied alike
        to the source and target meshes of the warp (``thead.render.lip_border``; 0: the detected contour). 2: the
        pooled slope (1) averages the four clips over all openings; their wide-open frames show up to twice it
        (d3's lower corners, WDA's upper lip), and at 2 MediaPipe reads WDA's self-reenacted mouth (from its open
        frame 0) as wide as the real frames (mouth over eye width at frames 40/110/190: 0.579/0.571/0.565 against
        0.578/0.570/0.586 on the real frames and 0.557/0.535/0.545 without the correction).
    turn_gain : (float, float, float)
        The head is drawn turned from the source's pose by the target's yaw, pitch and roll change times these.
        A warp of one picture shows a turn short: it cannot hide the ear and cheek turning away nor show those
        turning in, so MediaPipe reads a self-reenactment's yaw back at 0.87-0.95 of the real clip's change (WDA,
        turning through frontal, 3.2 degrees short on average). 1.1 on yaw: the re-fitted yaw's slope on the
        real change d3 / d12 / WDA .95 / .89 / .87 -> 1.03 / .98 / .95, full-frame L1, PSNR and keypoint distance
        closer to the real frames on all four shared clips, WDA's gaze error 3.21 -> 2.95 degrees. Pitch (read
        back at .74-.84) is left at 1: a gain there moved d3's gaze and unit agreement away from the real clip's.
        Only the drawing changes: ``target_vertices`` is the asked mesh.
    jaw_mesh_flow : bool
        Below the gate that tells the head from the neck (``head_ellipse_fade_from``: the jaw and the chin) the
        face mesh's own map holds to two pixels from the mesh's edge (a short ramp keeps the outline smooth),
        instead of easing into the dense flow over its three outer triangle rings as it does beside the hair and
        ears. The dense flow is a smooth average of the nearby vertices' moves; where a turn stretches the
        source's far-side jaw it lags the mesh by a few pixels, and the jaw's outer rings read the background
        beside the source's jaw: a pale band of the wall (WDA's flag stripes) ran down inside the jaw of every
        frame turned towards that side.
    inner_lip_edge : bool
        On a source whose mouth is open, the inner-lip contour is moved out onto where its lips start, measured
        by colour once per source (``thead.render.lip_border.inner_lip_edge``), and each target's contour by the
        share of the source's opening it keeps. On WDA's first frame MediaPipe's lower inner-lip contour runs over
        the lower teeth 1-2 px short of the lip and the upper one 1.4-2.4 px inside the upper lip's dark, wet inner
        side; every frame that shut the mouth drew a pale line of teeth between the lips, and MediaPipe read the
        shut lips about a pixel apart. The seam of a mouth so shut is anti-aliased (``soften_lip_seam``: the
        collapsed mouth's pixels each took one lip's map, a staircase of dark and pale dashes). No effect on a
        closed source.
    """

    batch_size: int = field(default=16, metadata={"digest": False})
    workers: int | None = field(default=None, metadata={"digest": False})
    symmetry: bool = True
    head_proxy: bool = True
    pad_fraction: float = 0.125
    falloff: float = 0.6
    background: str = "still"
    neck_follow: float | None = 0.0
    head_proxy_centre: tuple[float, float] = (0.0, -1.0)
    head_proxy_rings: tuple[tuple[float, float], ...] = ((1.2, 3.0), (1.45, 6.0))
    head_proxy_max_y: float = 2.0
    head_ellipse: tuple[float, float, float] = (0.16, 0.8, 0.88)
    head_ellipse_fade_from: tuple[float, float] = (0.32, 0.64)
    neck_fade: float = 0.25
    neck_bend_fade: float = 0.56
    neck_fade_motion: tuple[float, float] = (0.05, 0.1)
    neck_slack: float = 0.05
    matte_range: tuple[float, float] = (0.25, 0.75)
    plate_margin: float = 0.005
    plate_hole_from: float = 0.05
    plate_column_blur: float = 0.015
    min_mirror_share: float = 0.02
    mirror_region: tuple[float, float] = (1.5, 2.0)
    mirror_neck: tuple[float, float] = (0.95, 1.25)
    background_band: float = 0.01
    edge_fade: float = 0.015
    surround_blend: float = 0.1
    gaze_gain: tuple[float, float] = (1.2, 1.0)
    lip_border: float = 2.0
    turn_gain: tuple[float, float, float] = (1.1, 1.0, 1.0)
    jaw_mesh_flow: bool = True
    inner_lip_edge: bool = True

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be 'still' or 'warp', got '{self.background}'")
        given = {
            "batch_size": max(1, int(self.batch_size)), "symmetry": bool(self.symmetry),
            "workers": None if self.workers is None else max(1, int(self.workers)),
            "head_proxy": bool(self.head_proxy), "pad_fraction": max(0.0, float(self.pad_fraction)),
            "jaw_mesh_flow": bool(self.jaw_mesh_flow), "inner_lip_edge": bool(self.inner_lip_edge),
            "neck_follow": None if self.neck_follow is None else float(self.neck_follow),
            "head_proxy_rings": tuple(_pair(r) for r in self.head_proxy_rings),
        }
        for f in fields(self):
            if f.name in given:
                value = given[f.name]
            elif isinstance(f.default, tuple):
                value = _pair(getattr(self, f.name))
            elif isinstance(f.default, float):
                value = float(getattr(self, f.name))
            else:
                continue
            object.__setattr__(self, f.name, value)
        for name in ("matte_range", "mirror_region", "mirror_neck", "head_ellipse_fade_from"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} must be an increasing pair, got {(lo, hi)}")

    def digest(self) -> str:
        """A stable name of what this configuration renders: part of every output's cache key.

        Returns
        -------
        str
            ``"mesh-<CODE_REVISION>-<12 hex digits>"``: a hash of ``CODE_REVISION`` and every field but
            ``batch_size``. Equal settings give equal digests across runs, machines and Python versions.
        """
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("digest", True)}
        blob = json.dumps([CODE_REVISION, settings], sort_keys=True)
        return f"mesh-{CODE_REVISION}-{hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()}"


DEFAULT_CONFIG = MeshConfig()

__all__ = ["BACKGROUNDS", "CODE_REVISION", "DEFAULT_CONFIG", "MeshConfig"]
