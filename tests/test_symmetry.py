"""Symmetry fill: visibility of the mesh, the mirror image of a source, the per-pixel share, and the engine filling a
side the source turned away from its mirror image (measured on a face made exactly symmetric, where the mirror image
is the truth)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from thead.engines import MeshEngine, edit_params
from thead.facemodel import geometry as geo
from thead.facemodel.model import load_face_model
from thead.fitting import fit_image
from thead.render.symmetry import (OUTER_FROM, OUTER_RAMP, cell_means_at, face_interior, fill_profile,
                                   fill_weight_map, flip_columns, flip_points, midline_coordinate, mirror_column,
                                   mirror_weights, mirrored_source, occluded_vertices, mesh_visibility,
                                   vertex_facing)

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import S, crop_of, face_mask  # noqa: E402


def test_cell_means_are_read_where_the_points_are():
    """Regression (issue 11's pixel-convention audit): the relighting read its k-pixel cell means with a grid
    scaled to the image size, while the cells (ceil_mode) cover ceil(W / k) * k pixels: a point at x = 80 of a
    100 px image with k = 7 read the ramp at 84. On a linear ramp the cell means read back the ramp itself."""
    H, W, k = 40, 100, 7
    ramp = ((torch.arange(W, dtype=torch.float32) + 0.5) / W).expand(1, 1, H, W)  # value x / W at pixel centres
    points = torch.tensor([[80.0, 20.0], [33.3, 11.0], [10.0, 30.5]])
    colour, cover = cell_means_at(ramp, torch.ones(1, 1, H, W), k, points)
    assert torch.allclose(colour[:, 0], points[:, 0] / W, atol=2e-3), colour[:, 0]
    assert torch.allclose(cover, torch.ones(3))


def posed_mean_face(yaw_deg: float, size: int = 256) -> torch.Tensor:
    """The model's mean face [1, 478, 3] (pixels, depth) at ``yaw_deg``, centred in a ``size`` image."""
    model = load_face_model()
    pose = torch.tensor([[np.radians(yaw_deg), 0.0, 0.0, size / 2, size / 2, size / 22.0]])
    return geo.project(torch.as_tensor(model.mean_shape)[None], pose)


def mirror_map() -> torch.Tensor:
    return torch.as_tensor(load_face_model().mirror, dtype=torch.long)


def test_flip_is_an_exact_column_permutation_that_points_follow():
    rng = np.random.default_rng(0)
    image = torch.as_tensor(rng.random((1, 3, 40, 50)), dtype=torch.float32)
    k = 47  # mirror about x = 23.5
    flipped = flip_columns(image, k)
    # Columns whose mirror lies inside the image (here 0..46) map back exactly.
    torch.testing.assert_close(flip_columns(flipped, k)[..., :k], image[..., :k])
    for x in (3.5, 20.5, 30.5):  # pixel centres: the flipped point sits on the flipped pixel
        p = torch.tensor([[x, 10.5]])
        q = flip_points(p, k)
        assert torch.equal(flipped[0, :, 10, int(q[0, 0])], image[0, :, 10, int(x)])
    # Columns mirrored beyond the image are reflected back in, never out of range.
    assert flip_columns(image, 10).shape == image.shape


def test_facing_and_occlusion_follow_a_head_turn():
    frontal = posed_mean_face(0.0)
    facing = vertex_facing(frontal)[0]
    assert facing[1] > 0.7  # the nose tip faces the camera
    assert (facing[:468] > 0).float().mean() > 0.9
    mirror = mirror_map()
    # Symmetric face, frontal view: each point is seen as squarely as its partner (but for a few pairs where the
    # tessellation itself is not symmetric).
    assert torch.quantile((facing - facing[mirror]).abs(), 0.95) < 0.01
    turned = posed_mean_face(40.0)
    f = vertex_facing(turned)[0]
    left = torch.as_tensor(load_face_model().mean_shape)[:, 0] > 1.0  # model x > 1 cm: one cheek
    right = torch.as_tensor(load_face_model().mean_shape)[:, 0] < -1.0
    assert f[left].mean() - f[right].mean() > 0.3 or f[right].mean() - f[left].mean() > 0.3
    assert occluded_vertices(frontal, 256, 256).sum() <= 4  # at most the oval's ear points, folded behind
    assert occluded_vertices(posed_mean_face(60.0), 256, 256).sum() > 5  # the nose hides part of the far cheek
    vis = mesh_visibility(turned)
    assert float(vis.min()) >= 0.0 and float(vis.max()) <= 1.0


def test_mirror_weights_and_share_point_at_the_side_the_source_hid():
    mirror = mirror_map()
    source = posed_mean_face(35.0)
    vis = mesh_visibility(source)
    same = mirror_weights(vis, source, mirror)
    assert float(same.max()) == 0.0  # the source's own view needs no fill
    target = posed_mean_face(0.0)
    w = mirror_weights(vis, target, mirror)[0]
    x = torch.as_tensor(load_face_model().mean_shape)[:, 0]  # model frame, cm
    facing = vertex_facing(source)[0]
    far_side = x > 0 if facing[x > 1].mean() < facing[x < -1].mean() else x < 0
    hidden = far_side & (x.abs() > 1.0)
    near = ~far_side & (x.abs() > 1.0)
    assert w[hidden].mean() > 0.5 and w[near].max() < 0.05
    share = fill_weight_map(target, w[None], 256, 256)[0, 0]
    xs = target[0, hidden, 0].mean()  # the hidden side's columns in the target
    side = 1 if xs > 128 else -1
    far, near = (200, 56) if side > 0 else (56, 200)
    assert share[128, far] > 0.8 and share[128, near] < 0.05
    # Further away than the source: nothing to fill.
    assert float(mirror_weights(vis, posed_mean_face(50.0), mirror).max()) < 0.3


def test_outside_the_face_the_filled_side_takes_the_whole_share(monkeypatch):
    """Regression (issue 16, WDA self-reenactment): beyond the face the share followed the profile's last bins, a
    partial blend just outside the jaw, where the source's own render and its mirror image's each put an ear and an
    earring a few pixels apart: two earrings. Off the (inset) face surface the filled side now takes the frame's
    largest share whole; the face surface itself keeps the profile, and the other side gets none."""
    mirror = mirror_map()
    vis = mesh_visibility(posed_mean_face(10.0))  # a source turned a little, as WDA's first frame
    target = posed_mean_face(0.0)
    w = mirror_weights(vis, target, mirror)
    side, prof = fill_profile(target, w)  # none near the midline, all from the cheek's outer part on
    top = float(prof[0, -1])
    assert top > 0.5
    share = fill_weight_map(target, w, 256, 256, (side, prof))[0, 0]
    inside = face_interior(target, 256, 256)[0, 0]
    d = (midline_coordinate(target, 256, 256) * side.view(-1, 1, 1, 1))[0, 0]
    rows = torch.arange(256, dtype=torch.float32).view(-1, 1).expand(256, 256) + 0.5
    eye = float((target[0, 263, :2] - target[0, 33, :2]).norm())
    low = rows > float(target[0, 168, 1]) + OUTER_FROM[1] * eye  # the face is upright: from below the eyes down
    off = (inside < 1e-3) & (d > OUTER_RAMP[1]) & low
    assert int(off.sum()) > 1000
    assert torch.allclose(share[off], torch.full_like(share[off], top), atol=2e-3)
    # The profile alone (as before) blended the two renders there: 0.7 of the mirror image beside the jaw.
    import thead.render.symmetry as symmetry

    monkeypatch.setattr(symmetry, "outer_share", lambda v, distance, top: torch.zeros_like(distance))
    profile_only = fill_weight_map(target, w, 256, 256, (side, prof))[0, 0]
    assert float(profile_only[off].min()) < 0.8 * top
    # At the temples and above (the hairline is the face's outline there) the profile alone, as before.
    above = (inside < 1e-3) & (rows < float(target[0, 168, 1]) + OUTER_FROM[0] * eye)
    assert int(above.sum()) > 1000 and torch.equal(share[above], profile_only[above])
    assert float(share[(inside < 1e-3) & (d < -0.1)].max()) == 0.0
    # The eye and mouth openings are face (closed), not off it: the profile's share there, not the outer one.
    for a, b in ((13, 14), (33, 133), (263, 362)):
        x, y = (0.5 * (target[0, a, :2] + target[0, b, :2])).long().tolist()
        assert float(inside[y, x]) == 1.0
        assert float(share[y, x]) == pytest.approx(float(fill_weight_map(target, w, 256, 256)[0, 0, y, x]))
    x, y = target[0, 168, :2].long().tolist()  # the nose bridge: on the midline, none
    assert float(share[y, x]) < 0.05


def test_mirrored_source_relabels_the_landmarks():
    mirror = mirror_map()
    verts = posed_mean_face(20.0)
    image = torch.zeros(1, 3, 256, 256)
    image_m, verts_m, k = mirrored_source(image, verts, mirror)
    assert k == mirror_column(verts)
    torch.testing.assert_close(verts_m[:, mirror], flip_points(verts, k))
    # The mirror image of a face turned +20 deg is a face turned -20 deg: its facing pattern is the mirrored one
    # (but for the few vertices where the tessellation is not symmetric).
    diff = (vertex_facing(verts_m) - vertex_facing(verts)[:, mirror]).abs()
    assert torch.quantile(diff, 0.9) < 1e-4


@pytest.fixture(scope="module")
def symmetric_astronaut(tmp_path_factory, astronaut):
    """The astronaut's crop averaged with its own mirror image (landmarks likewise): an exactly symmetric face."""
    from thead.io import write_image

    work = tmp_path_factory.mktemp("symmetry")
    write_image(work / "astronaut.png", astronaut)
    crop, lm = crop_of(work / "astronaut.png", work, "astronaut")
    lm_t = torch.as_tensor(lm)[None]
    k = mirror_column(lm_t)
    img = torch.as_tensor(crop).permute(2, 0, 1)[None].float()
    sym = (0.5 * (img + flip_columns(img, k)))[0].permute(1, 2, 0).round().byte().numpy()
    sym_lm = (0.5 * (lm_t + flip_points(lm_t, k)[:, mirror_map()]))[0].numpy()
    return sym, sym_lm, fit_image(sym_lm, S)


@pytest.mark.parametrize("yaw", [35.0, -35.0])
def test_engine_fills_the_side_a_turned_source_hid(symmetric_astronaut, yaw):
    """Turn the symmetric face by ``yaw``, use that render as the source and turn it back: with the symmetry fill
    the side the turned source hid comes back from its mirror image, close to the truth; without it, it is
    smeared from the silhouette."""
    face, lm, fit = symmetric_astronaut
    # Drawn at the asked turns (no turn gain): the source's landmarks are the render's own mesh, and the turn back
    # must meet the true face.
    on = MeshEngine("cpu", batch_size=4, turn_gain=(1.0, 1.0, 1.0))
    off = MeshEngine("cpu", batch_size=4, symmetry=False, turn_gain=(1.0, 1.0, 1.0))
    turned = on.render_full(on.prepare(face, lm, fit), edit_params(fit, yaw=np.radians(yaw)))
    source, source_lm = turned.frames[0], turned.vertices[0]
    source_fit = fit_image(source_lm, S)
    back = edit_params(source_fit, yaw=float(fit.pose[0, 0]), pitch=float(fit.pose[0, 1]), roll=float(fit.pose[0, 2]))
    with_fill = on.render_full(on.prepare(source, source_lm, source_fit), back)
    without = off.render_full(off.prepare(source, source_lm, source_fit), back)
    mask = face_mask(with_fill.vertices[0])
    cols = np.arange(S)[None, :]
    mid = with_fill.vertices[0, 168, 0]
    hidden = mask & ((cols > mid) if yaw > 0 else (cols < mid))  # +yaw turns the image-right cheek away
    err_on = np.abs(with_fill.frames[0].astype(float) - face).mean(-1)[hidden].mean()
    err_off = np.abs(without.frames[0].astype(float) - face).mean(-1)[hidden].mean()
    assert err_on < 0.75 * err_off, (err_on, err_off)
    assert err_on < 10.0  # 8-bit levels


def test_symmetry_leaves_the_source_view_and_small_turns_alone(symmetric_astronaut):
    face, lm, fit = symmetric_astronaut
    on, off = MeshEngine("cpu", batch_size=4), MeshEngine("cpu", batch_size=4, symmetry=False)
    targets = edit_params(fit, yaw=float(fit.pose[0, 0]) + np.radians(3.0))
    a = on.render(on.prepare(face, lm, fit), targets)[0]
    b = off.render(off.prepare(face, lm, fit), targets)[0]
    assert np.abs(a.astype(int) - b).max() <= 2


def test_vertex_normals_sum_consistently_wound_triangles():
    """MediaPipe's edges give 15 of the face surface's 854 triangles wound the other way; summed as they come,
    their normals cancelled their neighbours' (on the face model's mean shape, looked at from the front, four jaw
    points' normals faced away; on the astronaut 20 vertex normals were off by more than 0.2). Wound alike, every
    vertex normal of the mean shape faces the viewer."""
    from thead.face.topology import mesh_triangles
    from thead.render.mesh_topology import oriented_mesh_triangles
    from thead.render.symmetry import vertex_normals

    shape = torch.as_tensor(load_face_model().mean_shape, dtype=torch.float32)[None]
    raw, tris = np.asarray(mesh_triangles()), oriented_mesh_triangles()
    assert (np.sort(raw, 1) == np.sort(tris, 1)).all() and (raw != tris).any(1).sum() == 15
    assert (vertex_normals(shape, raw)[0, :468, 2] <= 0).sum() == 4
    assert (vertex_normals(shape)[0, :468, 2] > 0).all()
