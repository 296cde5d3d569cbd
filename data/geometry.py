"""Neighbourhood geometry on point sets: k-nearest neighbours, spacing and PCA normals.

Pure functions over ``(N, 3)`` arrays (NumPy arrays or CPU/GPU torch tensors are
accepted; results are NumPy). Neighbour search uses ``scipy.spatial.cKDTree``,
imported on first use so ``import data`` stays cheap.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NORMAL_NEIGHBORS = 16
_CHUNK = 1 << 17  # rows per chunk when building (chunk, k, 3) neighbourhoods


def _as_points(points) -> np.ndarray:
    """``points`` as a C-contiguous float64 (N, 3) array."""
    if hasattr(points, "detach"):  # torch tensor, without importing torch here
        points = points.detach().cpu().numpy()
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64))
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    return pts


def _tree(pts: np.ndarray):
    from scipy.spatial import cKDTree

    return cKDTree(pts, balanced_tree=False, compact_nodes=False)


def _query(tree, pts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``tree.query(pts, k)`` as (N, k) arrays, issued in the tree's leaf order.

    Querying points in leaf order keeps consecutive queries in cache and is
    2-3x faster than the input order for large unsorted clouds.
    """
    n = len(pts)
    perm = tree.indices
    dist, idx = tree.query(pts[perm], k=k, workers=-1)
    out_d = np.empty((n, k), dtype=np.float64)
    out_i = np.empty((n, k), dtype=np.int64)
    out_d[perm] = np.asarray(dist).reshape(n, k)
    out_i[perm] = np.asarray(idx).reshape(n, k)
    return out_d, out_i


def knn(points, k: int, *, include_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every point, nearest first.

    points: (N, 3). Returns ``(dist, index)``, both (N, k): Euclidean distances
    (float64) and neighbour indices (int64). With ``include_self=False`` the
    query point itself is excluded (its duplicate coordinates are not). Missing
    neighbours (when fewer than ``k`` exist) get distance ``inf`` and index ``N``.
    """
    pts = _as_points(points)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = len(pts)
    if n == 0:
        return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
    extra = 0 if include_self else 1
    dist, idx = _query(_tree(pts), pts, k + extra)
    if include_self:
        return dist, idx
    # Drop the query itself. Usually it is column 0, but with duplicate points
    # the tree may list a twin first, so remove the column that equals the row.
    rows = np.arange(n)[:, None]
    is_self = idx == rows
    has_self = is_self.any(axis=1)
    # Rows where self was not found among k+1 (many exact duplicates): drop the last column.
    drop = np.where(has_self, is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    return dist[keep].reshape(n, k), idx[keep].reshape(n, k)


def nearest_neighbor_distances(points) -> np.ndarray:
    """Distance from each point to its nearest *other* point. points: (N, 3) -> (N,) float64.

    A single point has no neighbour: its distance is ``inf``.
    """
    dist, _ = knn(points, 1)
    return dist[:, 0]


def estimate_normals(points, k: int = DEFAULT_NORMAL_NEIGHBORS, *, viewpoint=None) -> np.ndarray:
    """Unit normals by PCA of each point's ``k``-neighbourhood (the point itself included).

    The normal is the eigenvector of the smallest eigenvalue of the
    neighbourhood covariance. Its sign is chosen so the normal faces
    ``viewpoint`` (3,); by default the centroid of all points, i.e. surfaces face
    the inside of the scene, which suits indoor rooms scanned from within.
    Fewer than 3 points give ``(0, 0, 1)``. points: (N, 3) -> (N, 3) float32.
    """
    pts = _as_points(points)
    n = len(pts)
    normals = np.zeros((n, 3), dtype=np.float32)
    if n < 3:
        normals[:, 2] = 1.0
        return normals
    k = int(min(max(k, 3), n))
    tree = _tree(pts)
    order = tree.indices  # work in leaf order: neighbourhood gathers stay in cache
    _, idx = tree.query(pts[order], k=k, workers=-1)
    idx = np.asarray(idx).reshape(n, k)
    view = pts.mean(axis=0) if viewpoint is None else np.asarray(viewpoint, dtype=np.float64).reshape(3)
    for start in range(0, n, _CHUNK):
        rows = order[start : start + _CHUNK]
        nb = pts[idx[start : start + _CHUNK]]  # (c, k, 3)
        centred = nb - nb.mean(axis=1, keepdims=True)
        cov = np.einsum("cki,ckj->cij", centred, centred)
        _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
        nrm = vecs[:, :, 0]
        flip = np.einsum("ci,ci->c", nrm, view - pts[rows]) < 0
        nrm[flip] *= -1.0
        normals[rows] = nrm
    return normals
