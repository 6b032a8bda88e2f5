"""Rendering core of the weight-free reenactment engine (torch, batched, CPU or CUDA, no per-triangle loops).

Conventions: images are float NCHW in [0, 1] inside (uint8 HxWx3 RGB at the edges, see :mod:`.images`);
pixel coordinates are continuous with pixel centres at ``(j + 0.5, i + 0.5)`` (MediaPipe's ``x * W``);
vertex depth z: smaller is nearer; flows are backward (target pixel -> source position), in pixels.

Typical use::

    source = prepare_source(src_image, src_vertices)         # once per source
    out = render_head(source, dst_vertices).image              # [B, 3, H, W]
    frames = paste_back(out, original_frames, to_crop)         # back into the full frames
"""

from thead.render.dense_flow import blend_flows, border_taper, dense_backward_flow, face_size
from thead.render.eyes import EyeSource, eye_layer, eye_opening_masks, iris_geometry, prepare_eyes
from thead.render.head_render import HeadRender, render_head
from thead.render.images import frames_to_tensor, tensor_to_frames
from thead.render.layers import SourceFace, composite_layers, prepare_source
from thead.render.mesh_topology import closed_mesh_triangles, lid_split_mesh, strip_triangulation
from thead.render.mesh_warp import MeshWarp, flow_to_grid, grid_to_flow, mesh_warp_maps, pixel_centres, warp_image
from thead.render.mouth import inner_mouth_mask, mouth_layer, synthesize_mouth
from thead.render.paste_back import crop_with_affine, paste_back, warp_affine
from thead.render.rasterize import Fragments, interpolate, rasterize

__all__ = [
    "Fragments", "rasterize", "interpolate",
    "MeshWarp", "mesh_warp_maps", "warp_image", "flow_to_grid", "grid_to_flow", "pixel_centres",
    "dense_backward_flow", "blend_flows", "border_taper", "face_size",
    "closed_mesh_triangles", "lid_split_mesh", "strip_triangulation",
    "EyeSource", "prepare_eyes", "eye_layer", "eye_opening_masks", "iris_geometry",
    "inner_mouth_mask", "mouth_layer", "synthesize_mouth",
    "SourceFace", "prepare_source", "composite_layers",
    "HeadRender", "render_head",
    "paste_back", "crop_with_affine", "warp_affine",
    "frames_to_tensor", "tensor_to_frames",
]
