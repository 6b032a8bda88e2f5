"""Triangle sets the renderer needs on top of :mod:`thead.face.topology`: the eye and inner-mouth holes closed by
strip triangulations, and per-vertex "distance from the mesh boundary" weights for feathering.

All functions return numpy arrays and are cached; they depend on topology only, never on a face's shape.
"""

from __future__ import annotations

import functools

import numpy as np

from thead.face.topology import LEFT_EYE, LIPS_INNER, NUM_POINTS, RIGHT_EYE, mesh_triangles


def strip_triangulation(loop: np.ndarray, second_corner: int) -> np.ndarray:
    """Triangulate a closed, roughly convex contour as a zipper between its two sides.

    loop: [N] vertex ids of a closed contour; ``loop[0]`` and ``loop[second_corner]`` are its two corners (eye or
    mouth corners). Side A is ``loop[1:second_corner]``, side B the rest walked back from the first corner.
    Returns [N - 2, 3] triangles. The strip stays valid (no flipped triangles) while the sides close towards each
    other, e.g. an eye closing or a mouth shutting: triangles just become thin.
    """
    loop = np.asarray(loop, dtype=np.int64)
    m = int(second_corner)
    side_a = list(loop[1:m])
    side_b = list(loop[m + 1:][::-1])
    c0, c1 = int(loop[0]), int(loop[m])
    tris: list[tuple[int, int, int]] = []
    ia = ib = 0
    prev_a, prev_b = c0, c0
    # First triangle fans out of corner c0 to the first point on each side.
    if side_a and side_b:
        tris.append((c0, side_a[0], side_b[0]))
        prev_a, prev_b = side_a[0], side_b[0]
        ia = ib = 1
    while ia < len(side_a) or ib < len(side_b):
        # Advance the side that lags in normalised position (equal counts give an alternating zipper).
        ta = ia / max(len(side_a), 1)
        tb = ib / max(len(side_b), 1)
        if ib >= len(side_b) or (ia < len(side_a) and ta <= tb):
            tris.append((prev_a, side_a[ia], prev_b))
            prev_a = side_a[ia]
            ia += 1
        else:
            tris.append((prev_a, side_b[ib], prev_b))
            prev_b = side_b[ib]
            ib += 1
    tris.append((prev_a, c1, prev_b))
    return np.asarray(tris, dtype=np.int64)


@functools.lru_cache(maxsize=None)
def right_eye_triangles() -> np.ndarray:
    """[14, 3] triangles filling the subject's right eye opening (inside the ``RIGHT_EYE`` lid contour)."""
    return strip_triangulation(RIGHT_EYE, 8)


@functools.lru_cache(maxsize=None)
def left_eye_triangles() -> np.ndarray:
    """[14, 3] triangles filling the subject's left eye opening (inside the ``LEFT_EYE`` lid contour)."""
    return strip_triangulation(LEFT_EYE, 8)


@functools.lru_cache(maxsize=None)
def inner_mouth_triangles() -> np.ndarray:
    """[18, 3] triangles filling the inner-lip contour ``LIPS_INNER`` (the mouth opening)."""
    return strip_triangulation(LIPS_INNER, 10)


@functools.lru_cache(maxsize=None)
def closed_mesh_triangles() -> np.ndarray:
    """[F + 46, 3] the face-mesh surface with its eye and mouth holes filled (a disc: only the face oval is open).

    Warping through these maps the source's eye and mouth openings onto the target's, so a warp has no holes;
    the eye and mouth layers are drawn on top.
    """
    return np.concatenate([mesh_triangles().astype(np.int64), right_eye_triangles(), left_eye_triangles(),
                           inner_mouth_triangles()], axis=0)


@functools.lru_cache(maxsize=None)
def oriented_mesh_triangles() -> np.ndarray:
    """The face surface's triangles (``thead.face.topology.mesh_triangles``) wound alike
    (:func:`consistently_oriented`): 15 of the 854 come the other way round from MediaPipe's edges, and their
    normals cancelled their neighbours' in a vertex's sum (on the astronaut 20 vertex normals off by more than
    0.2; the jaw's silhouette points read as facing the camera)."""
    return consistently_oriented(mesh_triangles())


@functools.lru_cache(maxsize=None)
def oriented_closed_mesh_triangles() -> np.ndarray:
    """:func:`closed_mesh_triangles` consistently wound (:func:`consistently_oriented`): for vertex normals."""
    return consistently_oriented(closed_mesh_triangles())


def consistently_oriented(triangles: np.ndarray) -> np.ndarray:
    """The triangles re-wound so that every pair sharing an edge traverses it in opposite directions (one
    orientation over each connected part, the one most of its triangles had).

    MediaPipe's tessellation comes as edges, and the triangles rebuilt from them (and the strip fills of the eye
    and mouth holes) are wound either way: area-weighted vertex normals summed over such triangles partly cancel
    and flip. triangles: [F, 3] vertex ids of an orientable surface (an edge shared by more than two triangles is
    ignored for propagation). Returns [F, 3] int64, rows in the same order, each the same triangle (maybe with two
    corners swapped).
    """
    tris = np.asarray(triangles, dtype=np.int64).copy()
    by_edge: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tris):
        for k in range(3):
            a, b = int(t[k]), int(t[(k + 1) % 3])
            by_edge.setdefault((min(a, b), max(a, b)), []).append(i)
    flip = np.zeros(len(tris), dtype=bool)
    seen = np.zeros(len(tris), dtype=bool)

    def directed(i: int) -> set[tuple[int, int]]:
        t = tris[i][[0, 2, 1]] if flip[i] else tris[i]
        return {(int(t[k]), int(t[(k + 1) % 3])) for k in range(3)}

    for seed in range(len(tris)):
        if seen[seed]:
            continue
        seen[seed] = True
        part, queue = [seed], [seed]
        while queue:
            i = queue.pop()
            edges = directed(i)
            for a, b in edges:
                users = by_edge[(min(a, b), max(a, b))]
                if len(users) != 2:
                    continue
                j = users[0] if users[1] == i else users[1]
                if seen[j]:
                    continue
                seen[j] = True
                flip[j] = (a, b) in directed(j)  # a neighbour must run the shared edge as (b, a)
                part.append(j)
                queue.append(j)
        if 2 * int(flip[part].sum()) > len(part):  # keep the winding most of the part had
            flip[part] = ~flip[part]
    tris[flip] = tris[flip][:, [0, 2, 1]]
    return tris


def boundary_vertices(triangles: np.ndarray) -> np.ndarray:
    """Ids of vertices on edges used by exactly one triangle (the open boundary of the triangle set)."""
    tris = np.asarray(triangles, dtype=np.int64)
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(uniq[counts == 1])


@functools.lru_cache(maxsize=None)
def _boundary_rings(triangles_key: bytes, shape: tuple[int, int], num_vertices: int) -> np.ndarray:
    tris = np.frombuffer(triangles_key, dtype=np.int64).reshape(shape)
    ring = np.full(num_vertices, np.iinfo(np.int64).max // 2, dtype=np.int64)
    used = np.zeros(num_vertices, dtype=bool)
    used[tris.ravel()] = True
    frontier = boundary_vertices(tris)
    ring[frontier] = 0
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    level = 0
    while frontier.size:
        level += 1
        nxt = edges[np.isin(edges[:, 0], frontier), 1]
        nxt = np.unique(nxt[ring[nxt] > level])
        ring[nxt] = level
        frontier = nxt
    ring[~used] = 0
    return ring


def boundary_distance_weights(triangles: np.ndarray, rings: int = 2, num_vertices: int = NUM_POINTS) -> np.ndarray:
    """[V] float32 per-vertex feather weight: 0 on the boundary, ``k / rings`` on the k-th ring of neighbours in.

    Interpolated over the mesh this is a continuous weight that is exactly 0 on the mesh's outer edge and reaches 1
    ``rings`` triangle rings inside: a feathered mask that costs nothing beyond one more interpolated channel.
    """
    tris = np.ascontiguousarray(triangles, dtype=np.int64)
    ring = _boundary_rings(tris.tobytes(), tris.shape, int(num_vertices))
    return np.clip(ring / max(int(rings), 1), 0.0, 1.0).astype(np.float32)


NUM_HOLE_TRIANGLES = 46  # 14 + 14 eye-opening triangles + 18 mouth-opening triangles, always last

UPPER_LID_POINTS = np.concatenate([RIGHT_EYE[9:16], LEFT_EYE[9:16]])  # upper-lid contours, 7 points per eye


@functools.lru_cache(maxsize=None)
def lid_split_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The closed mesh with every edge from an upper-lid contour point to a point outside the eye split once.

    Returns (triangles [F', 3], split_edges [E, 2]); split edge k = (lid point, outer point) adds vertex
    ``NUM_POINTS + k``, placed on that edge by the caller (see ``thead.render.eyes.lid_split_vertices``).
    A split vertex a lash-line's width above the lid margin keeps the lashes a thin band when the lid comes
    down: the stretch of a closing lid goes to the skin above them instead of smearing the lashes.
    """
    upper = set(UPPER_LID_POINTS.tolist())
    eye = set(RIGHT_EYE.tolist()) | set(LEFT_EYE.tolist())
    edge_ids: dict[tuple[int, int], int] = {}

    def split(a: int, b: int) -> int | None:
        if a in upper and b not in eye:
            key = (a, b)
        elif b in upper and a not in eye:
            key = (b, a)
        else:
            return None
        if key not in edge_ids:
            edge_ids[key] = NUM_POINTS + len(edge_ids)
        return edge_ids[key]

    out: list[tuple[int, int, int]] = []
    for tri in mesh_triangles().astype(np.int64).tolist():
        mids = [split(tri[i], tri[(i + 1) % 3]) for i in range(3)]
        n = sum(m is not None for m in mids)
        if n == 0:
            out.append(tuple(tri))
            continue
        # Boundary polygon of the triangle with split points inserted, in winding order.
        poly: list[int] = []
        for i in range(3):
            poly.append(tri[i])
            if mids[i] is not None:
                poly.append(mids[i])
        if n == 1:
            k = poly.index(next(m for m in mids if m is not None))
            p = poly[k - 1:] + poly[:k - 1]  # start at the split edge's first corner: [v0, m, v1, v2]
            out += [(p[0], p[1], p[3]), (p[1], p[2], p[3])]
        elif n == 2:
            # The two split edges share one corner X; walk the pentagon from X: [X, m1, Y, Z, m2].
            for start in range(5):
                p = poly[start:] + poly[:start]
                if p[0] < NUM_POINTS and p[1] >= NUM_POINTS and p[4] >= NUM_POINTS:
                    break
            out += [(p[0], p[1], p[4]), (p[1], p[2], p[3]), (p[1], p[3], p[4])]
        else:  # cannot happen: a triangle has at most two lid-to-outside edges
            raise AssertionError("unexpected lid triangle")
    holes = np.concatenate([right_eye_triangles(), left_eye_triangles(), inner_mouth_triangles()], axis=0)
    edges = np.array(sorted(edge_ids, key=edge_ids.get), dtype=np.int64).reshape(-1, 2)
    return np.concatenate([np.asarray(out, dtype=np.int64), holes], axis=0), edges


def surface_rings() -> np.ndarray:
    """[468] int64: how many triangle rings each surface point lies inside the face oval (0 on the oval)."""
    tris = closed_mesh_triangles()
    return _boundary_rings(np.ascontiguousarray(tris).tobytes(), tris.shape, NUM_POINTS)[:468]


@functools.lru_cache(maxsize=None)
def dense_flow_points(rings: int = 2, interior_stride: int = 4) -> np.ndarray:
    """Surface-point ids that drive the dense flow: the face oval and ``rings`` rings inside it (all of them:
    that is where the dense flow must agree with the mesh), plus every ``interior_stride``-th interior point."""
    ring = surface_rings()
    outer = np.nonzero(ring <= rings)[0]
    inner = np.nonzero(ring > rings)[0][::max(1, int(interior_stride))]
    return np.sort(np.concatenate([outer, inner]))
