"""Tests of thead.render: rasteriser, mesh warp, dense flow, eye / mouth layers, paste-back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thead.face.topology import LIPS_INNER, MOUTH_CORNERS, mesh_triangles
from thead.geometry import Affine2D
from thead.render import (
    blend_flows,
    closed_mesh_triangles,
    crop_with_affine,
    dense_backward_flow,
    frames_to_tensor,
    inner_mouth_mask,
    interpolate,
    iris_geometry,
    mesh_warp_maps,
    paste_back,
    pixel_centres,
    prepare_source,
    rasterize,
    render_head,
    synthesize_mouth,
    tensor_to_frames,
    warp_image,
)
from thead.render.mesh_topology import boundary_vertices, lid_split_mesh, strip_triangulation

S = 256


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def astro_face(astronaut):
    """The astronaut cropped to a 256x256 face crop, with its 478 MediaPipe points (pixels, depth) in the crop."""
    import cv2
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        res = fm.process(astronaut)
    assert res.multi_face_landmarks, "mediapipe found no face in the astronaut"
    H, W = astronaut.shape[:2]
    pts = np.array([[p.x * W, p.y * H, p.z * W] for p in res.multi_face_landmarks[0].landmark])
    centre = pts[:468, :2].mean(0)
    side = int(round(2.2 * np.ptp(pts[:468, :2], axis=0).max()))
    x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    x0, y0 = max(x0, 0), max(y0, 0)
    scale = S / side
    crop = cv2.resize(astronaut[y0:y0 + side, x0:x0 + side], (S, S), interpolation=cv2.INTER_AREA)
    v = pts.copy()
    v[:, 0] = (pts[:, 0] - x0) * scale
    v[:, 1] = (pts[:, 1] - y0) * scale
    v[:, 2] *= scale
    return frames_to_tensor(crop), torch.tensor(v, dtype=torch.float32)[None]


def _brute_force(verts: np.ndarray, tris: np.ndarray, H: int, W: int):
    """Reference rasteriser: float64, every pixel against every triangle. Returns (ids, bary, margin, gap)."""
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    p = np.stack([xs, ys], -1).reshape(-1, 2)
    best = np.full(len(p), -1)
    best_z = np.full(len(p), np.inf)
    second_z = np.full(len(p), np.inf)
    margin = np.full(len(p), np.inf)
    for f, (a, b, c) in enumerate(tris):
        v0, v1, v2 = verts[a], verts[b], verts[c]
        den = (v1[0] - v0[0]) * (v2[1] - v0[1]) - (v2[0] - v0[0]) * (v1[1] - v0[1])
        if abs(den) < 1e-9:
            continue
        w1 = ((p[:, 0] - v0[0]) * (v2[1] - v0[1]) - (v2[0] - v0[0]) * (p[:, 1] - v0[1])) / den
        w2 = ((v1[0] - v0[0]) * (p[:, 1] - v0[1]) - (p[:, 0] - v0[0]) * (v1[1] - v0[1])) / den
        w0 = 1 - w1 - w2
        w = np.stack([w0, w1, w2], 1)
        # Signed distance (pixels) to the nearest edge line: barycentric times the height over that edge.
        lengths = np.array([np.linalg.norm(v2[:2] - v1[:2]), np.linalg.norm(v0[:2] - v2[:2]),
                            np.linalg.norm(v1[:2] - v0[:2])])
        margin = np.minimum(margin, np.abs((w * (abs(den) / lengths)).min(1)))
        inside = (w >= 0).all(1)
        z = w @ np.array([v0[2], v1[2], v2[2]])
        closer = inside & (z < best_z)
        second_z = np.where(closer, best_z, np.where(inside, np.minimum(second_z, z), second_z))
        best_z = np.where(closer, z, best_z)
        best = np.where(closer, f, best)
    gap = np.where(np.isfinite(second_z), second_z - np.where(np.isfinite(best_z), best_z, 0), np.inf)
    return best.reshape(H, W), margin.reshape(H, W), gap.reshape(H, W)


# ----------------------------------------------------------------------------------------------- rasteriser
def test_rasterize_matches_brute_force():
    rng = np.random.default_rng(0)
    H, W = 40, 48
    for trial in range(4):
        V, F = 24, 30
        verts = np.concatenate([rng.uniform(-6, [W + 6, H + 6], size=(V, 2)), rng.uniform(0, 10, (V, 1))], 1)
        tris = np.unique(np.sort([rng.choice(V, 3, replace=False) for _ in range(F)], axis=1), axis=0)
        tris = np.concatenate([[[0, 0, 1]], tris])  # a degenerate triangle: must be skipped
        frags = rasterize(torch.tensor(verts, dtype=torch.float64)[None], tris, H, W)
        ref, margin, gap = _brute_force(verts, tris, H, W)
        got = frags.tri_index[0].numpy()
        clear = (margin > 1e-3) & (gap > 1e-3)  # away from edges and from depth ties
        assert clear.mean() > 0.8
        np.testing.assert_array_equal(got[clear], ref[clear])


def test_z_test_picks_the_nearer_triangle_in_either_order():
    verts = torch.tensor([[[2, 2, 5.0], [30, 4, 5.0], [10, 30, 5.0],
                           [4, 3, 1.0], [28, 6, 1.0], [12, 28, 1.0]]])
    for tris in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        frags = rasterize(verts, np.array(tris), 32, 32)
        near_id = tris.index([3, 4, 5])
        assert frags.tri_index[0, 12, 12].item() == near_id
        assert frags.depth[0, 12, 12].item() == pytest.approx(1.0)
    # Nearer means smaller z even when it is negative.
    verts2 = verts.clone()
    verts2[0, 3:, 2] = -3.0
    assert rasterize(verts2, np.array([[0, 1, 2], [3, 4, 5]]), 32, 32).tri_index[0, 12, 12].item() == 1


def test_offscreen_degenerate_and_nan_triangles_are_skipped():
    verts = torch.tensor([[[-50, -50, 0], [-40, -50, 0], [-45, -40, 0],  # off-screen
                           [5, 5, 0], [5, 5, 0], [5, 5, 0],  # a point
                           [1, 1, 0], [float("nan"), 3, 0], [3, 9, 0],  # NaN
                           [0, 0, 0], [64, 0, 0], [0, 64, 0]]], dtype=torch.float32)  # covers the corner
    frags = rasterize(verts, np.arange(12).reshape(4, 3), 16, 16)
    ids = frags.tri_index[0]
    assert set(ids.unique().tolist()) <= {-1, 3}
    assert (ids[:8, :8] == 3).all()
    assert torch.isinf(frags.depth[0][ids < 0]).all()


def test_barycentrics_sum_to_one_and_interpolate_pixel_centres(astro_face):
    _, v = astro_face
    v = torch.cat([v, v + torch.tensor([3.3, -2.1, 0.5])], 0)  # a batch of 2
    frags = rasterize(v, mesh_triangles(), S, S)
    cov = frags.tri_index >= 0
    assert cov.float().mean() > 0.1
    bsum = frags.bary.sum(-1)[cov]
    assert torch.allclose(bsum, torch.ones_like(bsum), atol=1e-5)
    assert frags.bary[cov].min() > -1e-4
    xy = interpolate(frags, v[..., :2])  # [B, 2, H, W]
    centres = pixel_centres(S, S).unsqueeze(0).expand(2, -1, -1, -1)
    err = (xy - centres).abs().amax(1)[cov]
    assert err.max() < 1e-3


def test_rasterize_batch_frames_are_independent(astro_face):
    _, v = astro_face
    tris = mesh_triangles()
    a = rasterize(v, tris, S, S)
    b = rasterize(torch.cat([v + torch.tensor([40.0, 0, 0]), v], 0), tris, S, S)
    assert torch.equal(a.tri_index[0], b.tri_index[1])


# ----------------------------------------------------------------------------------------------- topology
def test_strip_triangulations_close_the_holes():
    tris = closed_mesh_triangles()
    assert len(tris) == len(mesh_triangles()) + 46
    from thead.face.topology import FACE_OVAL
    assert set(boundary_vertices(tris).tolist()) == set(FACE_OVAL.tolist())
    split, edges = lid_split_mesh()
    assert set(boundary_vertices(split).tolist()) == set(FACE_OVAL.tolist())
    assert split.max() == 478 + len(edges) - 1
    assert strip_triangulation(np.arange(8), 4).shape == (6, 3)


# ----------------------------------------------------------------------------------------------- warps
def test_identity_mesh_warp_reproduces_the_image(astro_face):
    img, v = astro_face
    maps = mesh_warp_maps(v, v, closed_mesh_triangles(), S, S)
    out = warp_image(img, maps.grid)
    inside = maps.mask[0, 0] > 0
    err = (out - img).abs().amax(1)[0][inside]
    assert inside.float().mean() > 0.1
    assert err.max() < 1e-4
    assert maps.flow.abs().max() < 1e-3


def test_translation_moves_the_face_and_its_neighbourhood(astro_face):
    img, v = astro_face
    shift = torch.tensor([6.0, -4.0, 0.0])
    dst = v + shift
    maps = mesh_warp_maps(v, dst, closed_mesh_triangles(), S, S)
    dense = dense_backward_flow(v, dst, S, S)
    flow = blend_flows(maps.flow, maps.feather, dense)
    out = warp_image(img, maps.grid)
    # Inside the moved face: exactly the translated source.
    inside = maps.mask[0, 0] > 0
    expected = torch.roll(img, shifts=(-4, 6), dims=(2, 3))
    assert (out - expected).abs().amax(1)[0][inside].max() < 1e-4
    assert torch.allclose(flow[0, :, inside], -shift[:2].view(2, 1), atol=1e-3)
    # Just outside the face the dense flow still translates (within 10%), then fades out.
    ring = (maps.mask[0, 0] == 0) & (torch.nn.functional.max_pool2d(maps.mask, 9, 1, 4)[0, 0] > 0)
    assert (flow[0, :, ring] + shift[:2].view(2, 1)).norm(dim=0).max() < 0.1 * shift[:2].norm()
    combined = warp_image(img, (pixel_centres(S, S).unsqueeze(0) + flow).permute(0, 2, 3, 1)
                          * torch.tensor([2.0 / S, 2.0 / S]) - 1.0)
    assert (combined - expected).abs().amax(1)[0][ring].mean() < 0.03


def test_dense_flow_is_continuous_and_fades_to_zero(astro_face):
    _, v = astro_face
    # A head turn: rotate the 3D points about a vertical axis behind the face.
    th = np.deg2rad(10)
    c = v[0, :468].mean(0)
    pivot_z = c[2] + 0.55 * np.ptp(v[0, :468, 0].numpy())
    x, z = v[..., 0] - c[0], v[..., 2] - pivot_z
    dst = v.clone()
    dst[..., 0] = c[0] + x * np.cos(th) + z * np.sin(th)
    dst[..., 2] = pivot_z - x * np.sin(th) + z * np.cos(th)
    maps = mesh_warp_maps(v, dst, closed_mesh_triangles(), S, S)
    dense = dense_backward_flow(v, dst, S, S, falloff=0.6)
    flow = blend_flows(maps.flow, maps.feather, dense)[0]
    # Continuity across the face boundary and outside it (inside, the nose may legitimately occlude the cheek):
    # no step between neighbouring pixels where the mesh weight is below 1/2 (tearing would be a big step).
    outer = maps.feather[0, 0] < 0.5
    dy = (flow[:, 1:, :] - flow[:, :-1, :]).abs().amax(0)[outer[1:, :] & outer[:-1, :]]
    dx = (flow[:, :, 1:] - flow[:, :, :-1]).abs().amax(0)[outer[:, 1:] & outer[:, :-1]]
    step = torch.maximum(dy.max(), dx.max())
    motion = flow.abs().max()
    assert motion > 5.0
    assert step < 0.1 * motion and step < 1.0, (step, motion)
    boundary = (maps.mask[0, 0] > 0) & (torch.nn.functional.max_pool2d(1 - maps.mask, 3, 1, 1)[0, 0] > 0)
    assert maps.feather[0, 0][boundary].max() < 0.35
    # Fades: exactly 0 on the image border and far from the face.
    border = torch.cat([flow[:, 0], flow[:, -1], flow[:, :, 0], flow[:, :, -1]], 1)
    assert border.abs().max() < 1e-6
    d_face = torch.cdist(pixel_centres(S, S).view(2, -1).T, dst[0, :468, :2]).amin(1)
    far = d_face.view(S, S) > 0.6 * np.ptp(dst[0, :468, :2].numpy(), axis=0).max() + 6
    assert far.any() and flow[:, far].abs().max() < 0.05


def test_render_head_identity_reproduces_the_source(astro_face):
    img, v = astro_face
    out = render_head(prepare_source(img, v), v).image
    err = (out - img).abs().amax(1)[0]
    face = rasterize(v, closed_mesh_triangles(), S, S).tri_index[0] >= 0
    assert err[face].mean() < 0.01
    assert err[~face].max() < 1e-3
    frames = tensor_to_frames(out)
    assert frames.dtype == np.uint8 and frames.shape == (1, S, S, 3)


# ----------------------------------------------------------------------------------------------- layers
def test_iris_moves_intact_with_gaze(astro_face):
    img, v = astro_face
    source = prepare_source(img, v)
    shift = torch.tensor([3.0, 0.0])  # whole pixels: the moved iris is the same pixels, no resampling
    dst = v.clone()
    dst[0, 468:478, :2] += shift
    out = render_head(source, dst).image
    centres, radii = iris_geometry(v)
    pix = pixel_centres(S, S)
    for e in range(2):
        c, r = centres[0, e], radii[0, e]
        ring = (pix - c.view(2, 1, 1)).norm(dim=0) < 0.7 * r  # iris core in the source
        ys, xs = torch.nonzero(ring, as_tuple=True)
        src_vals = img[0, :, ys, xs]
        # Sample the output at the shifted positions (bilinear; the shift is fractional).
        grid = ((torch.stack([xs, ys], 1).float() + 0.5 + shift) * (2.0 / S) - 1.0).view(1, 1, -1, 2)
        moved = torch.nn.functional.grid_sample(out, grid, align_corners=False)[0, :, 0]
        stayed = out[0, :, ys, xs]
        err_moved = (moved - src_vals).abs().mean()
        err_stayed = (stayed - src_vals).abs().mean()
        assert err_moved < 0.04, (e, err_moved)
        assert err_moved < 0.5 * err_stayed, (e, err_moved, err_stayed)


def test_closed_eye_shows_no_iris(astro_face):
    img, v = astro_face
    from thead.face.topology import LEFT_EYE, RIGHT_EYE
    dst = v.clone()
    for loop in (RIGHT_EYE, LEFT_EYE):
        lower, upper = loop[1:8].copy(), loop[15:8:-1].copy()
        dst[0, upper, 1] = dst[0, lower, 1] - 0.3
    out = render_head(prepare_source(img, v), dst).image
    centres, radii = iris_geometry(v)
    lum_src, lum_out = [], []
    for e in range(2):
        c, r = centres[0, e], radii[0, e]
        core = (pixel_centres(S, S) - c.view(2, 1, 1)).norm(dim=0) < 0.5 * r
        lum_src.append(img[0, :, core].mean())
        lum_out.append(out[0, :, core].mean())
    # The dark iris is replaced by (brighter) lid skin.
    assert min(lum_out) > max(lum_src) + 0.1


def test_mouth_layer_fills_the_inner_lip_polygon(astro_face):
    img, v = astro_face
    fs = np.ptp(v[0, :468, 1].numpy())
    dst = v.clone()
    jaw = np.arange(468)[(v[0, :468, 1] > v[0, MOUTH_CORNERS, 1].mean() + 0.06 * fs).numpy()]
    lower = torch.as_tensor(np.concatenate([LIPS_INNER[11:], jaw]))
    dst[0, lower, 1] += 0.12 * fs
    mask = inner_mouth_mask(dst, S, S)[0, 0] > 0
    assert mask.sum() > 200
    out = render_head(prepare_source(img, v), dst).image[0]
    lum = (out * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    skin = (img[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    # Open mouth is mostly dark cavity (not skin-coloured), with some bright teeth.
    assert lum[mask].median() < 0.5 * skin[rasterize(v, mesh_triangles(), S, S).tri_index[0] >= 0].median()
    assert (lum[mask] > 0.6).float().mean() > 0.03
    # Synthesised mouth: dark, reddish cavity in the middle; bright teeth just under the upper lip.
    synth = synthesize_mouth(dst, S, S)[0]
    ys, xs = torch.nonzero(mask, as_tuple=True)
    mid = synth[:, ys, xs]
    assert (mid[0] >= mid[2] - 1e-6).float().mean() > 0.9  # red >= blue: warm cavity, not grey or skin
    up = dst[0, 13, :2]  # upper inner-lip centre
    tooth = synth[:, int(up[1] + 2), int(up[0])]
    assert tooth.mean() > 0.6


def test_render_is_batched_and_handles_a_source_batch_of_one(astro_face):
    img, v = astro_face
    dst = v.repeat(3, 1, 1) + torch.tensor([[[0, 0, 0.0]], [[3, 1, 0.0]], [[-2, 2, 0.0]]])
    out = render_head(prepare_source(img, v), dst)
    assert out.image.shape == (3, 3, S, S) and torch.isfinite(out.image).all()
    single = render_head(prepare_source(img, v), dst[1:2]).image
    assert (out.image[1:2] - single).abs().max() < 1e-5


# ----------------------------------------------------------------------------------------------- paste-back
def test_paste_back_of_an_identity_crop_reproduces_the_original(astronaut):
    frames = frames_to_tensor(astronaut[None].repeat(2, 0))
    to_crop = torch.tensor([[[1.0, 0, -100], [0, 1.0, -40]], [[1.0, 0, -150], [0, 1.0, -90]]])
    crops = crop_with_affine(frames, to_crop, (256, 256))
    assert torch.allclose(crops[0], frames[0, :, 40:296, 100:356], atol=1e-5)
    back = paste_back(crops, frames, to_crop)
    assert (back - frames).abs().max() < 1e-5
    # Scaled and rotated crop: the round trip is bilinear twice, so only close, and the seam is feathered.
    a = 0.2
    m = torch.tensor([[[1.3 * np.cos(a), -1.3 * np.sin(a), -250.0], [1.3 * np.sin(a), 1.3 * np.cos(a), -180.0]]],
                     dtype=torch.float32)
    crop = crop_with_affine(frames[:1], m, (256, 256))
    edited = crop.clone()
    edited[:, :, 100:150, 100:150] = 0.0  # a visible edit in the middle of the crop
    back = paste_back(edited, frames[:1], m)
    # Far from the crop nothing changes; the edit lands where the crop maps it.
    assert (back - frames[:1])[..., :20, :20].abs().max() == 0
    centre = Affine2D(m[0]).inverse.apply(torch.tensor([[125.0, 125.0]]))[0]
    assert back[0, :, int(centre[1]), int(centre[0])].max() < 0.05
    unchanged = paste_back(crop, frames[:1], m)
    assert (unchanged - frames[:1]).abs().mean() < 0.01


# ----------------------------------------------------------------------------------------------- real faces
@pytest.mark.shared_data
def test_render_real_portrait_head_turn(shared_data):
    import mediapipe as mp

    from thead.io.image import read_image

    import cv2

    image = read_image(shared_data / "images" / "s1.jpg")
    image = cv2.resize(image, (384, 384), interpolation=cv2.INTER_AREA)  # keep the test quick
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        res = fm.process(image)
    H, W = image.shape[:2]
    v = torch.tensor([[p.x * W, p.y * H, p.z * W] for p in res.multi_face_landmarks[0].landmark],
                     dtype=torch.float32)[None]
    img = frames_to_tensor(image)
    source = prepare_source(img, v)
    dst = v.clone()
    dst[..., 0] += 0.05 * (v[..., 2] - v[..., 2].mean())  # a slight turn
    out = render_head(source, torch.cat([v, dst])).image
    assert torch.isfinite(out).all()
    face = rasterize(v, closed_mesh_triangles(), H, W).tri_index[0] >= 0
    assert (out[0] - img[0]).abs().amax(0)[face].mean() < 0.01
    assert (out[1] - img[0]).abs().amax(0)[face].mean() > 0.005


def test_layers_in_windows_match_full_frame_layers(astro_face):
    from thead.render.eyes import eye_layer
    from thead.render.windows import region_window

    img, v = astro_face
    source = prepare_source(img, v)
    dst = v.repeat(2, 1, 1)
    dst[1, 468:478, 0] += 2.0
    dst[1] += torch.tensor([5.0, -3.0, 0.0])
    rgb, alpha = eye_layer(source.eyes, dst, S, S)
    win = region_window(dst[:, :468, :2], 3.0, S, S)
    w_rgb, w_alpha = eye_layer(source.eyes, win.shift(dst), win.height, win.width)
    assert torch.allclose(win.gather(alpha), w_alpha, atol=1e-5)
    inside = w_alpha > 1e-3
    assert torch.allclose(win.gather(rgb)[inside.expand_as(w_rgb)], w_rgb[inside.expand_as(w_rgb)], atol=1e-4)
    back = win.scatter(torch.zeros_like(alpha), w_alpha)
    assert torch.allclose(back, alpha, atol=1e-5)


def test_letterbox_bars_are_found_grown_filled_and_masked():
    from thead.render.images import bar_mask, fill_bars, letterbox_bars

    image = np.full((40, 60, 3), 90, np.uint8)
    image[:, :, 1] = np.arange(60, dtype=np.uint8)[None] * 2 + 40  # a picture with a gradient across
    image[32:] = 0  # an 8-row letterbox at the bottom
    image[33, 5] = 20  # compression noise: one bright pixel does not break the bar (share 0.98)
    image[:, :2] = 3  # a 2-column pillarbox at the left
    assert letterbox_bars(image) == (0, 8 + 2, 2 + 2, 0)  # grown by the 2-pixel margin
    assert letterbox_bars(image, margin=0) == (0, 8, 2, 0)
    filled = fill_bars(image, (0, 8, 2, 0))
    assert (filled[32:] == filled[31]).all() and (filled[:, :2] == filled[:, 2:3]).all()
    assert (filled[:32, 2:] == image[:32, 2:]).all()
    mask = bar_mask((40, 60), (0, 8, 2, 0))
    assert mask.sum() == 8 * 60 + 2 * 32 and mask[31, 2] == 0 and mask[32, 10] == 1 and mask[0, 1] == 1
    # A dark picture, or dark hair along one edge that is not a full row, is no letterbox.
    assert letterbox_bars(np.zeros((20, 20, 3), np.uint8)) == (0, 0, 0, 0)
    hair = np.full((20, 20, 3), 120, np.uint8)
    hair[:3, :15] = 5
    assert letterbox_bars(hair) == (0, 0, 0, 0)


def test_fill_rows_carries_a_horizontal_line_through_the_hole():
    """A wall with a dark shelf line, a person-shaped hole over its middle: filled along the rows the line runs on
    through the hole at full strength; the 2-D push-pull fill only spreads a faint smudge of it."""
    from thead.render.masks import fill_holes, fill_rows

    image = torch.full((1, 3, 64, 96), 0.8)
    image[:, :, 30:33] = 0.1  # the shelf line, rows 30-32
    known = torch.ones(1, 1, 64, 96)
    known[:, :, 10:, 30:66] = 0.0  # the hole, 36 pixels wide, from row 10 down
    rows = fill_rows(image, known)
    plain = fill_holes(image, known)
    assert (rows[:, :, 30:33, 30:66] - 0.1).abs().max() < 0.02  # the line crosses the hole
    assert (rows[:, :, 40:, 30:66] - 0.8).abs().max() < 0.02  # the wall below it stays wall
    assert (plain[:, :, 31, 48] - 0.1).abs().min() > 0.3  # the 2-D fill loses the line in the middle
    assert torch.equal(rows * known, image * known)  # known pixels untouched
    # A row with nothing known (the hole's full width) falls back to the 2-D fill instead of staying empty.
    known[:, :, 50:52] = 0.0
    filled = fill_rows(image, known)
    assert torch.isfinite(filled).all() and (filled[:, :, 50:52] - 0.8).abs().max() < 0.05


def test_fill_rows_fills_each_gap_from_its_own_ends_not_from_a_far_border():
    """A photo of a photo: a dark green wall inside a white paper border, a head-sized hole in the wall. Each row's
    gap takes the wall beside it (the shelf line still runs through); the average of each row's known pixels
    (the plate's fill before) pulls the white border into the hole (a pale head-shaped ghost)."""
    from thead.render.masks import fill_rows

    image = torch.full((1, 3, 64, 128), 0.25)
    image[..., :, :12] = 0.95  # the paper border
    image[..., :, -12:] = 0.95
    image[:, :, 30:33, 12:-12] = 0.05  # a shelf line on the wall
    known = torch.ones(1, 1, 64, 128)
    known[:, :, 8:, 34:94] = 0.0  # the hole, 60 pixels wide
    rows = fill_rows(image, known)
    row_mean = (image * known).sum(-1) / known.sum(-1)  # [B, C, H]: each row's known pixels averaged
    wall = (slice(None), slice(None), slice(40, 64), slice(34, 94))
    assert (rows[wall] - 0.25).abs().max() < 0.01  # the wall's own colour
    assert (row_mean[:, :, 40:64] - 0.25).abs().max() > 0.1  # the whole-row average is paler
    assert (rows[:, :, 31, 34:94] - 0.05).abs().max() < 0.02  # the line crosses the hole
    assert torch.equal(rows * known, image * known)  # known pixels untouched
    # A gap between two different walls runs from one to the other; a gap open on one side takes that side.
    two = torch.zeros(1, 1, 1, 10)
    two[..., :3] = 0.2
    two[..., 7:] = 0.6
    k = torch.ones(1, 1, 1, 10)
    k[..., 3:7] = 0.0
    line = fill_rows(two, k, reach=0)[0, 0, 0]
    assert torch.allclose(line[3:7], torch.tensor([0.28, 0.36, 0.44, 0.52]), atol=1e-5)
    k[..., 3:] = 0.0
    assert torch.allclose(fill_rows(two, k, reach=0)[0, 0, 0, 3:], torch.full((7,), 0.2))
    # Rows with nothing known are filled in 2-D.
    known[:, :, 50:52] = 0.0
    filled = fill_rows(image, known)
    assert torch.isfinite(filled).all() and (filled[:, :, 50:52] > 0.2).all() and (filled[:, :, 50:52] < 0.96).all()


def test_fill_rows_column_blur_turns_a_diagonal_stripes_row_streaks_into_a_soft_fill():
    """Diagonal stripes (a flag) with a hole whose edges are ragged, as a person matte's are: filled along the
    rows alone, neighbouring rows take different ends and the hole reads as thin horizontal streaks; with the
    column blur the fill changes smoothly from row to row, the known pixels stay exact, and a horizontal edge
    still runs through the hole, softened over the blur's reach only."""
    from thead.render.masks import fill_rows

    H, W = 96, 96
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    stripes = 0.5 + 0.4 * torch.sign(torch.sin((xx + yy) * 2 * torch.pi / 24))  # 12 px stripes at 45 degrees
    image = stripes.expand(1, 3, H, W).clone()
    known = torch.ones(1, 1, H, W)
    ragged = (torch.arange(H) * 7919 % 5).float()  # the hole's edges jump by up to 4 px from row to row
    for r in range(H):
        known[0, 0, r, 30 + int(ragged[r]):66 - int(ragged[(r + 3) % H])] = 0.0
    hole = known[0, 0] < 0.5

    def streakiness(filled: torch.Tensor) -> float:  # mean change from each hole row to the next
        d = (filled[0, 0, 1:] - filled[0, 0, :-1]).abs()
        return float(d[hole[1:] & hole[:-1]].mean())

    rows = fill_rows(image, known)
    smooth = fill_rows(image, known, column_blur=3)
    assert streakiness(rows) > 2.5 * streakiness(smooth)  # measured: 0.098 vs 0.027
    assert torch.equal(smooth * known, image * known)
    # A wall with a horizontal edge (light above, dark below row 48): it still crosses the hole, 3 px softened.
    wall = torch.where(yy < 48, 0.8, 0.2).expand(1, 3, H, W).clone()
    crossed = fill_rows(wall, known, column_blur=3)[0, 0, :, 48]
    assert float(crossed[:42].min()) > 0.79 and float(crossed[54:].max()) < 0.21
    assert 0.3 < float(crossed[47:49].mean()) < 0.7


def test_fill_holes_reaches_holes_far_from_anything_known():
    """On a 320-pixel canvas whose lower half knows nothing, the 2-D fill reaches the bottom rows: a pyramid
    stopped at 2 x 2 cells (the old default of 8 levels) left them near black."""
    from thead.render.masks import fill_holes

    image = torch.full((1, 3, 320, 320), 0.5)
    known = torch.zeros(1, 1, 320, 320)
    known[:, :, :100] = 1.0
    assert (fill_holes(image, known)[:, :, 300:] - 0.5).abs().max() < 1e-3
    assert fill_holes(image, known, levels=8)[:, :, 300:].max() < 0.1


def test_similarity_2d_recovers_a_known_similarity():
    from thead.render.mouth import similarity_2d

    rng = np.random.default_rng(3)
    src = torch.as_tensor(rng.uniform(0, 100, (2, 20, 2)), dtype=torch.float32)
    angle, scale, shift = 0.3, 1.4, torch.tensor([5.0, -7.0])
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    lin = torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
    dst = src @ lin.T + shift
    a = similarity_2d(src, dst)
    assert a.shape == (2, 2, 3)
    assert torch.allclose(a[:, :, :2], lin.expand(2, 2, 2), atol=1e-4)
    assert torch.allclose(a[:, :, 2], shift.expand(2, 2), atol=1e-2)


@pytest.mark.parametrize("pixels", [1, 2, 4])
def test_dilate_is_the_max_over_the_square_within_the_image(pixels):
    import torch.nn.functional as F

    from thead.render.compose import dilate

    gen = torch.Generator().manual_seed(pixels)
    mask = torch.rand(2, 3, 17, 23, generator=gen) - 0.5  # negative values: no zero padding may win at the edge
    k = 2 * pixels + 1
    expected = F.max_pool2d(mask, k, 1, pixels)  # max_pool2d pads with -inf
    assert torch.equal(dilate(mask, pixels), expected)
    assert torch.equal(dilate(mask, 0), mask)
    ints = (mask * 100).long()
    assert torch.equal(dilate(ints, pixels), F.max_pool2d(ints.double(), k, 1, pixels).long())


def test_upsampling_matrix_is_bilinear_interpolation_of_a_window():
    import torch.nn.functional as F

    from thead.render.dense_flow import upsampling_matrix

    x = torch.randn(2, 2, 6, 9, generator=torch.Generator().manual_seed(0))
    full = F.interpolate(x, size=(40, 31), mode="bilinear", align_corners=False)
    for top, left, h, w in [(0, 0, 40, 31), (3, 5, 30, 20)]:
        out = upsampling_matrix(6, 40, top, h) @ x @ upsampling_matrix(9, 31, left, w).t()
        torch.testing.assert_close(out, full[..., top:top + h, left:left + w], atol=1e-5, rtol=0)


def test_rasterize_depth_only_gives_the_same_depth_and_triangles():
    gen = torch.Generator().manual_seed(3)
    v = torch.rand(2, 40, 3, generator=gen) * torch.tensor([30.0, 30.0, 5.0])
    tris = torch.randint(0, 40, (60, 3), generator=gen)
    full = rasterize(v, tris, 32, 32)
    quick = rasterize(v, tris, 32, 32, depth_only=True)
    assert torch.equal(quick.depth, full.depth) and torch.equal(quick.tri_index, full.tri_index)
    assert (full.tri_index >= 0).any() and not quick.bary.any()


def test_blur3_is_the_1_2_1_kernel_with_edges_replicated():
    import torch.nn.functional as F

    from thead.render.masks import blur3

    x = torch.rand(2, 3, 9, 14, generator=torch.Generator().manual_seed(1))
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    kernel = (k.view(3, 1) * k.view(1, 3)).expand(3, 1, 3, 3)
    once = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    torch.testing.assert_close(blur3(x), once, atol=1e-6, rtol=0)
    twice = F.conv2d(F.pad(once, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    torch.testing.assert_close(blur3(x, 2), twice, atol=1e-6, rtol=0)


def test_moved_iris_disc_is_the_iris_only(astro_face):
    """The iris layer draws the iris disc at the target, not a ring of the source's surroundings with it: a
    wider disc (1.08 r + 1 px) carried the limbal shadow and lid colour along and a landmark detector read the
    moved iris back towards the eye's middle (d3 self-reenactment gaze error 9.25 deg; 8.93 with the iris disc
    alone)."""
    from thead.render.eyes import eye_layer

    img, v = astro_face
    source = prepare_source(img, v)
    dst = v.clone()
    dst[0, 468:478, 0] += 2.0  # a look sideways
    _, alpha = eye_layer(source.eyes, dst, S, S)
    centres, radii = iris_geometry(dst)
    dist = torch.stack([(pixel_centres(S, S) - centres[0, e].view(2, 1, 1)).norm(dim=0) for e in range(2)]).amin(0)
    reach = (dist - radii[0].max())[alpha[0, 0] > 0.01]
    assert reach.numel() > 20 and reach.max() <= 1.0  # no layer pixel beyond the iris edge's half-pixel rim


def test_consistently_oriented_rewinds_triangles_that_run_a_shared_edge_the_same_way():
    from collections import Counter

    from thead.render.mesh_topology import closed_mesh_triangles, consistently_oriented

    strip = np.array([[0, 1, 2], [0, 3, 2], [3, 2, 4]])  # the second runs edges (2, 0) and (3, 2) as its neighbours do
    assert consistently_oriented(strip).tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 4]]  # the odd one out re-wound

    def repeated(tris):
        c = Counter((int(t[k]), int(t[(k + 1) % 3])) for t in tris for k in range(3))
        return {e for e, n in c.items() if n > 1}

    closed = closed_mesh_triangles()
    assert len(repeated(closed)) > 30  # MediaPipe's rebuilt triangles and the eye fills come wound either way
    oriented = consistently_oriented(closed)
    assert np.array_equal(np.sort(oriented, 1), np.sort(closed, 1))
    assert len(repeated(oriented)) == 6  # only the edges of the two triangles on non-manifold edges (3 users)


def test_iris_offsets_round_trip_and_a_gain_moves_the_drawn_iris_further_along_the_eye(astro_face):
    """``eye_layer``'s gaze gain: the iris is drawn with its move from where the target's mesh at the source's own
    gaze (``gaze_rest``, here the source mesh: only the irises move) puts it, times the gain along the corner line
    (MediaPipe reads a rendered look sideways short), the look up or down as it is; a target that keeps the
    source's irises draws them where they were, and a gain without ``gaze_rest`` is refused."""
    from thead.render.eyes import eye_layer, from_iris_offsets, iris_offsets

    img, v = astro_face
    centres, _ = iris_geometry(v)
    torch.testing.assert_close(from_iris_offsets(v, iris_offsets(v)), centres, atol=1e-4, rtol=0)
    source = prepare_source(img, v)
    _, still_1 = eye_layer(source.eyes, v, S, S)
    _, still_g = eye_layer(source.eyes, v, S, S, gaze_gain=(1.5, 1.0), gaze_rest=v)
    assert torch.equal(still_1, still_g)
    dst = v.clone()
    dst[0, 468:478, 0] += 2.0  # a look sideways (image x runs along both eyes' corner lines here)
    dst[0, 468:478, 1] -= 1.5  # and up

    def drawn(alpha):
        ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
        out = []
        for e in range(2):
            near = ((xs - centres[0, e, 0]).abs() < 12) & ((ys - centres[0, e, 1]).abs() < 8)
            a = alpha[0, 0] * near
            out.append(torch.stack([(a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()]))
        return torch.stack(out)

    at_rest = drawn(still_1)
    plain = drawn(eye_layer(source.eyes, dst, S, S)[1]) - at_rest
    gained = drawn(eye_layer(source.eyes, dst, S, S, gaze_gain=(1.5, 1.0), gaze_rest=v)[1]) - at_rest
    ratio = gained[:, 0] / plain[:, 0]
    assert ((ratio > 1.35) & (ratio < 1.65)).all(), (plain, gained)
    torch.testing.assert_close(gained[:, 1], plain[:, 1], atol=0.3, rtol=0)  # up and down: no gain (1.5: 0.75 px)
    with pytest.raises(ValueError, match="gaze_rest"):
        eye_layer(source.eyes, dst, S, S, gaze_gain=(1.5, 1.0))


def test_the_white_painted_under_a_moved_iris_is_lit_like_the_skin_below_the_eye(astro_face):
    """The whites beside a centred iris are the eye's shadowed corners; the white a look uncovers is lit like the
    skin (on real clips 0.8-1.2 of the under-eye skin's luma): the painted white is at least ``WHITE_FLOOR`` of
    it. A source whose visible whites are dark (here darkened to 70 %) used to get a grey slab under the iris."""
    from thead.render.eyes import CHEEK_POINTS, LID_CENTRES, WHITE_FLOOR, eye_opening_masks

    img, v = astro_face
    centres, radii = iris_geometry(v)
    pix = pixel_centres(S, S)
    openings = eye_opening_masks(v, S, S)[0]
    dark = img.clone()
    for e in range(2):
        white = (openings[e] > 0) & ((pix - centres[0, e].view(2, 1, 1)).norm(dim=0) > 1.2 * radii[0, e])
        dark[0, :, white] *= 0.7
    luma = lambda x: (x * torch.tensor([0.299, 0.587, 0.114]).view(-1, 3, 1, 1)).sum(1)[0]  # noqa: E731
    source = prepare_source(dark, v)
    for e in range(2):
        spot = 0.5 * (v[0, LID_CENTRES[e][1], :2] + v[0, CHEEK_POINTS[e], :2])
        skin = luma(dark)[(pix - spot.view(2, 1, 1)).norm(dim=0) < 0.6 * radii[0, e]].median()
        core = (pix - centres[0, e].view(2, 1, 1)).norm(dim=0) < 0.5 * radii[0, e]
        painted = luma(source.eyes.iris_free)[core].mean()
        assert painted > 0.8 * WHITE_FLOOR * skin, (e, float(painted), float(skin))  # shading kept: not all of it


def _below_upper_lid(v: torch.Tensor, eye: int, pix: torch.Tensor) -> torch.Tensor:
    """[H, W] pixels from each pixel centre down to eye ``eye``'s upper-lid polyline (corner, 7 lid points,
    corner) along the image's y axis, at the pixel's x (nan beyond the corners)."""
    from thead.face.topology import LEFT_EYE, RIGHT_EYE

    loop = (RIGHT_EYE, LEFT_EYE)[eye]
    lid = v[0, np.r_[loop[0], loop[9:16], loop[8]], :2]
    lid = lid[lid[:, 0].argsort()]
    x, y = pix[0], pix[1]
    out = torch.full_like(x, float("nan"))
    for a, b in zip(lid[:-1], lid[1:]):
        t = (x - a[0]) / (b[0] - a[0]).clamp(min=1e-6)
        on = (t >= 0) & (t <= 1)
        out[on] = (y - (a[1] + t * (b[1] - a[1])))[on]
    return out


def test_the_white_painted_under_an_iris_keeps_the_upper_lid_margin(astro_face):
    """Where the iris is painted out, the lash line along the upper lid runs on across it: the painted white
    takes the lid margin's own colours at the same depth below the lid beside the disc. A fill from the white
    below left the moved iris's old place without its lash line, and MediaPipe read that eye's upper lid lower
    (a narrower eye on every sideways look of d0)."""
    from thead.render.eyes import eye_opening_masks

    img, v = astro_face
    centres, radii = iris_geometry(v)
    pix = pixel_centres(S, S)
    openings = eye_opening_masks(v, S, S)[0]
    lashed = img.clone()
    lash = torch.tensor([0.08, 0.06, 0.05]).view(3, 1)
    luma = lambda x: (x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1)).sum(0)  # noqa: E731
    for e in range(2):
        depth = _below_upper_lid(v, e, pix)
        band = (openings[e] > 0) & (depth >= 0) & (depth < 1.5)
        lashed[0][:, band] = lash  # a dark lash line along the whole upper lid, over the iris too
        over = ((pix[0] - centres[0, e, 0]).abs() < 0.6 * radii[0, e]) & (
            (pix - centres[0, e].view(2, 1, 1)).norm(dim=0) < radii[0, e])  # where the iris was, its middle
        free = prepare_source(lashed, v).eyes.iris_free[0]
        margin = band & over
        body = (openings[e] > 0) & over & (depth > 0.5 * radii[0, e])
        assert margin.sum() >= 3 and body.sum() >= 3, (e, int(margin.sum()), int(body.sum()))
        assert luma(free[:, margin]).mean() < 0.5 * luma(free[:, body]).mean(), e


def _lid_skin_disc(v: torch.Tensor, e: int, pix: torch.Tensor) -> torch.Tensor:
    """bool [S, S]: the disc eye ``e``'s lid-skin colour is read from (``LID_SKIN_SPOT``)."""
    from thead.render.eyes import BROW_CENTRES, LID_CENTRES, LID_SKIN_SPOT

    lid, brow = v[0, LID_CENTRES[e][0], :2], v[0, BROW_CENTRES[e], :2]
    spot = lid + LID_SKIN_SPOT[0] * (brow - lid)
    return (pix - spot.view(2, 1, 1)).norm(dim=0) < LID_SKIN_SPOT[1] * (brow - lid).norm()


def test_lid_skin_fill_paints_each_eye_with_its_own_lid_skin_and_leaves_the_rest(astro_face):
    from thead.face.topology import LEFT_EYE, RIGHT_EYE
    from thead.render.eyes import LID_SKIN_SHARE, eye_opening_masks, lid_skin_fill

    img, v = astro_face
    out = lid_skin_fill(img, v)
    openings = eye_opening_masks(v, S, S)[0]
    pix = pixel_centres(S, S)
    far = torch.ones(S, S, dtype=torch.bool)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1)
    for e in range(2):
        disc = img[0][:, _lid_skin_disc(v, e, pix)]  # [3, N]
        luma = (disc * weights).sum(0)
        skin = disc[:, luma >= luma.quantile(1.0 - LID_SKIN_SHARE)].mean(dim=1)  # its brightest quarter
        inside = openings[e] > 0
        torch.testing.assert_close(out[0][:, inside].median(dim=1).values, skin, atol=0.02, rtol=0)
        loop = (RIGHT_EYE, LEFT_EYE)[e]
        width = (v[0, loop[0], :2] - v[0, loop[8], :2]).norm()
        far &= (pix - v[0, loop, :2].mean(0).view(2, 1, 1)).norm(dim=0) > width
    assert torch.equal(out[0][:, far], img[0][:, far])


def test_a_shut_lid_takes_the_lit_skin_not_the_crease_shadow_or_the_brow(astro_face):
    """On a deep-set eye the disc between lid and brow is mostly crease shadow (and brow hairs): its median painted
    the lid skin a shut eye shows nearly as dark as the shadow (d3's left eye: a brown slab that MediaPipe read
    as an open eye, its lid gap 3.1 px wider than asked). A shut lid faces forward and catches the light like
    the disc's lit skin."""
    from thead.render.eyes import eye_opening_masks, lid_skin_fill

    img, v = astro_face
    pix = pixel_centres(S, S)
    lit, shadow = torch.tensor([0.72, 0.55, 0.45]), torch.tensor([0.20, 0.12, 0.08])
    painted = img.clone()
    openings = eye_opening_masks(v, S, S)[0]
    for e in range(2):
        disc = _lid_skin_disc(v, e, pix)
        painted[0][:, disc] = lit.view(3, 1)
        # 60 % of the disc in the crease's shadow (its lowest pixels): the disc's median is shadow.
        ys, xs = torch.nonzero(disc, as_tuple=True)
        low = (ys * S + xs).argsort(descending=True)[:int(0.6 * len(ys))]
        painted[0][:, ys[low], xs[low]] = shadow.view(3, 1)
        out = lid_skin_fill(painted, v)
        fill = out[0][:, openings[e] > 0].median(dim=1).values
        torch.testing.assert_close(fill, lit, atol=0.03, rtol=0)  # the median read the shadow


def test_the_lash_colour_is_the_lash_line_not_the_lid_skin_the_margin_points_sit_on(astro_face):
    """The tracked upper-lid margin runs on the lid skin beside the lashes as often as on them: the margin points'
    mean read a lash colour close to the lid's, and a shut eye's lash line hardly showed. The darkest share of
    the colours along the margin and a couple of pixels above it is the lash line's."""
    img, v = astro_face
    pix = pixel_centres(S, S)
    skin, lash = torch.tensor([0.70, 0.52, 0.42]), torch.tensor([0.06, 0.04, 0.03])
    painted = img.clone()
    for e in range(2):
        depth = _below_upper_lid(v, e, pix)  # pixels below the upper lid (negative above it; nan beside the eye)
        painted[0][:, (depth > -5.0) & (depth < 1.5)] = skin.view(3, 1)  # lid skin on and around the margin
        painted[0][:, (depth > -2.6) & (depth < -0.6)] = lash.view(3, 1)  # the lashes just above the tracked margin
    lashes = prepare_source(painted, v).eyes.lash_colour[0]  # [2, 3]
    for e in range(2):
        torch.testing.assert_close(lashes[e], lash, atol=0.05, rtol=0)


# ----------------------------------------------------------------------------------------------- lip border
def _open_mouth(vertices: torch.Tensor, drop: float) -> torch.Tensor:
    """The mesh with its jaw side of the mouth moved down ``drop`` pixels (smoothly fading out away from the
    mouth; nothing above the inner-lip line moves): a wider-open mouth of the same face."""
    v = vertices.clone()
    xy = v[0, :, :2]
    centre = xy[[13, 14]].mean(0)
    half = (xy[291] - xy[61]).norm() / 2
    r = ((xy - centre) / torch.stack([1.8 * half, 2.4 * half])).norm(dim=-1)
    below = ((xy[:, 1] - centre[1]) / 2.0 + 0.5).clamp(0.0, 1.0)  # 0 above the line, 1 a pixel below it
    v[0, :, 1] += drop * below * (1.0 - r).clamp(min=0.0).sqrt()
    return v


def _polygon(points: torch.Tensor, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("L", (size, size), 0)
    ImageDraw.Draw(im).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in points.tolist()], fill=1)
    return np.asarray(im) > 0


# Flat colours of a painted mouth (RGB, [3, 1, 1]).
_PAINT = {name: torch.tensor(rgb).view(3, 1, 1) for name, rgb in {
    "skin": (0.80, 0.60, 0.52), "lips": (0.68, 0.22, 0.25), "cavity": (0.15, 0.04, 0.05),
    "teeth": (0.92, 0.90, 0.84), "wet lip": (0.22, 0.05, 0.07)}.items()}


def _face_disc(vertices: torch.Tensor, size: int) -> torch.Tensor:
    """[size, size] bool: an ellipse of skin (180 x 152 px) around the mouth of the mesh [1, 478, >=2]."""
    centre = vertices[0, [13, 14], :2].mean(0)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return ((xx - centre[0]) / 90.0) ** 2 + ((yy - centre[1]) / 76.0) ** 2 < 1.0


def test_lip_border_moves_only_an_open_mouths_outer_lip_contour_inwards(astro_face):
    from thead.face.topology import LIPS_OUTER
    from thead.render.lip_border import REST_OPENING, lip_band, lip_border_vertices, mouth_opening

    _, v = astro_face
    closed = v.clone()
    closed[0, 14, :2] = closed[0, 13, :2]  # no gap: below the rest opening
    assert float(mouth_opening(closed)) < REST_OPENING
    assert torch.equal(lip_border_vertices(closed), closed)
    wide = _open_mouth(v, 14.0)
    assert float(mouth_opening(wide)) > 0.3
    moved = lip_border_vertices(wide)
    band, pair, share = lip_band()
    assert len(band) == 40 and ((share > 0.1) & (share < 0.9)).all()
    others = np.setdiff1d(np.arange(478), np.r_[LIPS_OUTER, band])
    assert torch.equal(moved[:, others], wide[:, others])
    shift = (moved - wide)[0, LIPS_OUTER, :2]
    assert 0.5 < float(shift.norm(dim=-1).max()) < 4.0
    # The band between the contours follows by its share: squeezed, not folded.
    assert torch.allclose((moved - wide)[0, band, :2], torch.as_tensor(share)[:, None] * shift[pair], atol=1e-4)
    assert torch.equal(moved[..., 2], wide[..., 2])
    # Inwards on the whole: the lips' polygon shrinks.
    def area(p: torch.Tensor) -> float:  # shoelace
        return 0.5 * abs(float((p[:, 0] * torch.roll(p[:, 1], -1) - torch.roll(p[:, 0], -1) * p[:, 1]).sum()))

    assert area(moved[0, LIPS_OUTER, :2]) < area(wide[0, LIPS_OUTER, :2]) - 10.0
    # Neighbouring contour points move alike along their normals (the measured slopes, used as they are, moved
    # two neighbours on the lower lip 1.28 px apart here, and a closing mouth's lower lip came out scalloped).
    from thead.render.lip_border import _outward_normals

    along = (shift * _outward_normals(wide[:, LIPS_OUTER, :2])[0]).sum(-1)
    assert float((along - torch.roll(along, 1, 0)).abs().max()) < 0.7  # measured: 0.53


def test_lip_border_keeps_the_lips_on_the_target_contour_when_the_source_mouth_is_open(astro_face):
    """An open source mouth whose vermilion border lies inside MediaPipe's contour (as measured on real faces)
    rendered at the same face's nearly closed mouth: with the border correction the lips fill the target's lip
    band; the plain contour-to-contour warp carries the skin inside the source's contour into it (thinner lips,
    shorter at the corners), and an identity target renders as without the correction."""
    import torch.nn.functional as F

    from thead.face.topology import LIPS_INNER, LIPS_OUTER
    from thead.render.lip_border import lip_border_vertices

    img, v = astro_face
    size = 2 * S  # the face twice as large: the border's offset spans a few pixels more than the resampling blur
    img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)
    target = v.clone()
    target[..., :2] *= 2.0
    source_v = _open_mouth(target, 28.0)
    border = lip_border_vertices(source_v)  # where the source's lips really end
    skin, lips, inside = (_PAINT[k] for k in ("skin", "lips", "cavity"))
    face = _face_disc(source_v, size)
    image = img.clone()
    image[0] = torch.where(face, skin, image[0])
    image[0] = torch.where(torch.as_tensor(_polygon(border[0, LIPS_OUTER, :2], size)), lips, image[0])
    image[0] = torch.where(torch.as_tensor(_polygon(source_v[0, LIPS_INNER, :2], size)), inside, image[0])
    source = prepare_source(image, source_v)

    # The same correction of both meshes: an identity target renders as without it.
    identity = render_head(source, source_v, lip_border=1.0).image
    assert (identity - render_head(source, source_v).image).abs().max() < 1e-4  # float rounding

    expected = (_polygon(lip_border_vertices(target)[0, LIPS_OUTER, :2], size)
                & ~_polygon(target[0, LIPS_INNER, :2], size))

    def lip_reading(gain: float) -> tuple[float, float]:
        """(lip area over the expected area, IoU with the expected lips) of the render at ``target``."""
        out = render_head(source, target, lip_border=gain).image[0]
        red = ((out[0] - out[1]) > 0.33).numpy() & face.numpy()  # lips 0.46, skin 0.20
        return float(red.sum() / expected.sum()), float((red & expected).sum() / (red | expected).sum())

    (plain_area, plain_iou), (area, iou) = lip_reading(0.0), lip_reading(1.0)
    # measured: (0.88, 0.83) and (1.00, 0.88)
    assert plain_area < 0.93
    assert abs(area - 1.0) < 0.05
    assert iou > plain_iou + 0.025


# ----------------------------------------------------------------------------------------------- inner lip edge
def _mouth_with_teeth_band(astro_face, band: float, wet: float = 0.0):
    """A face twice the astronaut crop's size with a wide-open mouth whose lower teeth show for ``band`` pixels
    between MediaPipe's lower inner-lip contour and the lower lip, and whose upper lip's inner ``wet`` pixels are
    its dark, shadowed inner side (both as on WDA's first frame); its face mesh, the same face's closed mesh, and
    the skin face's mask."""
    import torch.nn.functional as F

    from thead.face.topology import LIPS_OUTER

    img, v = astro_face
    size = 2 * S
    img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)
    face_v = v.clone()
    face_v[..., :2] *= 2.0
    source_v = _open_mouth(face_v, 28.0)
    closed = _open_mouth(face_v, -float((face_v[0, 13, :2] - face_v[0, 14, :2]).norm()))
    inner = source_v[0, LIPS_INNER, :2].clone()
    lowered = inner.clone()
    lowered[11:, 1] += band  # the lower inner lip (324 ... 95) moved down by the band
    raised = inner.clone()
    raised[1:10, 1] -= wet  # the upper inner lip (191 ... 415) moved up
    skin, lips, teeth, cavity, wet_lip = (_PAINT[k] for k in ("skin", "lips", "teeth", "cavity", "wet lip"))
    face = _face_disc(source_v, size)
    teeth_mask = torch.as_tensor(_polygon(lowered, size) & ~_polygon(inner, size))
    image = img.clone()
    image[0] = torch.where(face, skin, image[0])
    image[0] = torch.where(torch.as_tensor(_polygon(source_v[0, LIPS_OUTER, :2], size)), lips, image[0])
    image[0] = torch.where(torch.as_tensor(_polygon(raised, size)), wet_lip, image[0])
    image[0] = torch.where(torch.as_tensor(_polygon(inner, size)), cavity, image[0])
    image[0] = torch.where(teeth_mask, teeth, image[0])
    return image, source_v, closed, face


def test_inner_lip_edge_finds_the_band_of_teeth_inside_an_open_mouths_lower_lip(astro_face):
    from thead.render.lip_border import inner_lip_edge

    from thead.render.lip_border import mouth_opening

    image, source_v, closed, _ = _mouth_with_teeth_band(astro_face, 3.0)
    eye = float((source_v[0, 33, :2] - source_v[0, 263, :2]).norm())
    edge = inner_lip_edge(image, source_v)[0] * eye  # pixels
    # The lower lip's middle (402 ... 178) about the band's 3 px out (measured 0.9-2.9: less where the contour
    # runs aslant); the upper lip (on its contour) within the polygon fill's blur; the corners not at all.
    assert float(edge[13:18].min()) > 0.7 and float(edge[14:17].min()) > 1.5 and float(edge[13:18].max()) < 3.5
    assert float(edge[1:10].max()) < 1.5
    assert float(edge[0]) == 0.0 and float(edge[10]) == 0.0
    # The upper lip's dark inner side, nearer the cavity's colour than the lip's, is the mouth's too.
    wet, _, _, _ = _mouth_with_teeth_band(astro_face, 3.0, wet=2.5)
    upper = inner_lip_edge(wet, source_v)[0, 3:8] * eye  # 81 ... 311, the middle of the upper lip
    assert float(upper.min()) > 1.5 and float(upper.max()) < 4.0
    # Without the band the lower lip is on its contour; a mouth whose lips meet is not measured.
    plain, _, _, _ = _mouth_with_teeth_band(astro_face, 0.0)
    assert float(inner_lip_edge(plain, source_v)[0, 11:].max()) * eye < 1.5  # measured: 1.1
    assert float(mouth_opening(closed)) < 0.02
    assert float(inner_lip_edge(image, closed).max()) == 0.0
    assert prepare_source(image, closed).inner_lip is None


def test_a_mouth_closing_from_an_open_source_closes_on_its_lips_not_on_its_teeth(astro_face):
    """WDA's first frame as a source: its lower inner-lip contour runs over the teeth, and every closed frame drew
    a pale line of teeth between the lips. With ``inner_lip`` the closed mouth shows none, an identity target
    renders as without it, and a target opened as wide as the source still shows the source's teeth."""
    image, source_v, closed, face = _mouth_with_teeth_band(astro_face, 4.0)
    source = prepare_source(image, source_v)
    assert source.inner_lip is not None

    # The middle half of the mouth (towards the corners the test's band runs up the lip's sides, where the
    # contour's normals lie along it).
    yy, xx = torch.meshgrid(torch.arange(2 * S) + 0.5, torch.arange(2 * S) + 0.5, indexing="ij")
    half = float((closed[0, 291, :2] - closed[0, 61, :2]).norm()) / 2
    middle = face & ((xx - float(closed[0, [61, 291], 0].mean())).abs() < 0.5 * half)

    def teeth_pixels(target: torch.Tensor, inner_lip: bool) -> int:
        out = render_head(source, target, lip_border=0.0, inner_lip=inner_lip, layers=False).image[0]
        pale = (out.min(dim=0).values > 0.7) & ((out[0] - out[2]) < 0.15)  # teeth 0.84+, skin's blue 0.52
        return int((pale & middle).sum())

    assert teeth_pixels(closed, False) > 60  # measured: 105
    assert teeth_pixels(closed, True) < 25  # measured: 11
    identity = render_head(source, source_v, inner_lip=True).image
    assert (identity - render_head(source, source_v).image).abs().max() < 1e-4  # float rounding
    assert teeth_pixels(source_v, True) == teeth_pixels(source_v, False) > 100  # measured: 141


def test_soften_lip_seam_blurs_only_a_shut_mouths_seam(astro_face):
    """A staircase of dark and pale pixels along the inner-lip contour (what the warp draws where a mouth's
    triangles collapsed): with the mouth shut all the way the seam's pixel-to-pixel jumps shrink; pixels a few
    pixels off the contour and every pixel of an unshut target stay as they were."""
    from thead.face.topology import LIPS_INNER
    from thead.render.lip_border import soften_lip_seam

    _, v = astro_face
    inner = v[0, LIPS_INNER, :2]
    yy, xx = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    distance = torch.full((S, S), float("inf"))  # from each pixel centre to the contour
    for a, b in zip(inner, torch.roll(inner, -1, 0)):
        ab = b - a
        t = (((xx - a[0]) * ab[0] + (yy - a[1]) * ab[1]) / (ab * ab).sum().clamp(min=1e-6)).clamp(0.0, 1.0)
        distance = torch.minimum(distance, ((xx - a[0] - t * ab[0]) ** 2 + (yy - a[1] - t * ab[1]) ** 2).sqrt())
    on_seam = distance < 1.0
    checker = (torch.arange(S)[:, None] + torch.arange(S)[None, :]) % 2 == 0
    image = torch.full((1, 3, S, S), 0.6)
    image[0] = torch.where(on_seam & checker, torch.tensor(0.1).view(1, 1, 1), image[0])
    image[0] = torch.where(on_seam & ~checker, torch.tensor(0.95).view(1, 1, 1), image[0])
    assert soften_lip_seam(image, v, torch.zeros(1)) is image

    out = soften_lip_seam(image, v, torch.ones(1))
    core = (distance < 0.5)[:, 1:] & (distance < 0.5)[:, :-1]

    def jumps(x: torch.Tensor) -> float:  # mean change between horizontal neighbours right on the seam
        return float((x[0, 0, :, 1:] - x[0, 0, :, :-1]).abs()[core].mean())

    assert jumps(out) < 0.2 * jumps(image)  # measured: 0.85 -> 0.007
    far = distance > 3.0
    assert torch.equal(out[0][:, far], image[0][:, far])


def test_a_paste_fades_out_towards_the_picture_s_edge_not_the_canvas_s():
    """``inside_picture_fade``: 0 past the picture's edge and on it, 1 from ``pixels`` inside; where the picture
    runs past the canvas (its own border) there is no edge to fade towards."""
    from thead.render.compose import inside_picture_fade

    picture = np.zeros((40, 60), np.float32)
    picture[:, 20:] = 1.0  # the picture's left edge at column 20; it runs on past the canvas's other sides
    w = inside_picture_fade(picture, 8.0)[0, 0].numpy()
    assert w.shape == (40, 60) and w[:, :20].max() == 0.0
    assert w[20, 20] < 0.05 and 0.2 < w[20, 24] < 0.8 and w[20, 29] == 1.0
    assert w[:, 29:].min() == 1.0  # the canvas's top, bottom and right borders are no picture edge
    assert inside_picture_fade(np.ones((10, 10)), 4.0).min() == 1.0
