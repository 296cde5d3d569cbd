"""Pure-PyTorch Gaussian rasterization: projection, a fast pair-based compositor and a brute-force twin.

Math (3DGS / gsplat "classic" mode), for Gaussian i and pixel centre p = (col + 0.5, row + 0.5):

    Sigma_i   = R S S^T R^T                       (R from the wxyz quaternion, S = diag(scales))
    mu_c, V_c = W mu_i + t, W Sigma_i W^T         (world -> camera, OpenCV axes)
    mu2d      = (fx x/z + cx, fy y/z + cy)
    J         = [[fx/z, 0, -fx x'/z^2], [0, fy/z, -fy y'/z^2]]   x'/z, y'/z clamped to 1.3x the FOV
    Sigma2d   = J V_c J^T + dilation * I,         conic = Sigma2d^-1
    q_ip      = d^T conic d,  d = p - mu2d
    alpha_ip  = min(max_alpha, o_i exp(-q_ip / 2)); the pair counts only if alpha_ip >= alpha_threshold
                and q_ip <= sigma_cutoff^2
    Front to back in camera depth z_i:  T_ip = prod_{j before i} (1 - alpha_jp),  w_ip = T_ip alpha_ip;
    a pixel stops before the first Gaussian whose T_ip (1 - alpha_ip) <= transmittance_stop.
    colour_p = sum_i w_ip c_i + (1 - alpha_p) background,  alpha_p = sum_i w_ip,
    depth_p  = sum_i w_ip z_i / alpha_p  (0 where alpha_p == 0),  weights_i = sum_p w_ip.

The fast path (:func:`composite_pairs`) never builds the dense [pixels, Gaussians] matrix: it walks
each Gaussian's cutoff ellipse row by row to list its (Gaussian, pixel) pairs (in chunks; later
chunks skip pixels that nearer chunks already made opaque), sorts them by (pixel, depth) with one
stable radix sort, and turns a segmented float64 cumulative sum of log(1 - alpha) into
transmittance. Compositing weights have a hand-written backward (:class:`_CompositeWeights`) and
the reductions into pixels or Gaussians use a custom function whose backward recomputes products
instead of storing [pairs, channels] tensors; the per-Gaussian projection is plain autograd.
:func:`dense_weights_reference` is the brute-force twin the tests compare against.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RasterOptions:
    """Rasterization settings (defaults follow 3DGS / gsplat)."""

    tile_size: int = 16                 # gsplat tile size (the torch path bins per pixel instead)
    alpha_threshold: float = 1.0 / 255  # pairs with alpha below this are skipped
    max_alpha: float = 0.99             # alpha is clamped to this
    transmittance_stop: float = 1e-4    # a pixel stops once T would fall to this
    dilation: float = 0.3               # added to the 2D covariance diagonal, pixels^2
    sigma_cutoff: float = 3.0           # pairs beyond this Mahalanobis distance are skipped
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov_clamp: float = 1.3              # J is evaluated with x/z, y/z clamped to this x the half-FOV (gsplat)
    max_pairs_per_chunk: int = 2_000_000  # candidate pairs per chunk; later chunks skip already-opaque pixels
    sh_degree: int = 0                  # view-dependent colour from sh_rest up to this band (0: DC colours only)

    def __post_init__(self):
        checks = {
            "tile_size": self.tile_size >= 1,
            "alpha_threshold": 0 <= self.alpha_threshold < 1,
            "max_alpha": 0 < self.max_alpha < 1,
            "transmittance_stop": 0 <= self.transmittance_stop < 1,
            "dilation": self.dilation >= 0,
            "sigma_cutoff": self.sigma_cutoff > 0,
            "fov_clamp": self.fov_clamp >= 1,
            "max_pairs_per_chunk": self.max_pairs_per_chunk >= 1,
            "sh_degree": self.sh_degree in (0, 1, 2, 3),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"RasterOptions.{name}: invalid value {getattr(self, name)!r}")
        if len(self.background) != 3:
            raise ValueError(f"RasterOptions.background: got {self.background!r}, expected 3 values (RGB)")


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities (N Gaussians, differentiable)."""

    means2d: Tensor  # [N, 2] pixel coordinates (u, v)
    conics: Tensor   # [N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    cov2d: Tensor    # [N, 3] (xx, xy, yy) of the 2D covariance, dilation included
    depths: Tensor   # [N] camera z
    visible: Tensor  # [N] bool: in front, inside near/far, non-degenerate, footprint touches the image


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """quats [N, 4] wxyz (any norm) -> rotation matrices [N, 3, 3]."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, camera,
                      options: RasterOptions) -> Projection:
    """EWA projection of N Gaussians (means [N,3], quats [N,4], scales [N,3], opacities [N]) into ``camera``."""
    w2c = camera.world_to_cam.to(means)
    K = camera.K.to(means)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    rot_w = w2c[:3, :3]
    pc = means @ rot_w.T + w2c[:3, 3]
    x, y, z = pc.unbind(-1)
    in_depth = (z > camera.near) & (z < camera.far)
    z_safe = torch.where(in_depth, z, torch.ones_like(z))

    m = quat_to_rotmat(quats) * scales[:, None, :]          # R S
    cov_c = rot_w @ (m @ m.transpose(1, 2)) @ rot_w.T       # W R S S^T R^T W^T
    tan_x, tan_y = 0.5 * camera.width / fx, 0.5 * camera.height / fy
    extra = options.fov_clamp - 1.0
    tx = z_safe * torch.clamp(x / z_safe, min=-(cx / fx + extra * tan_x), max=(camera.width - cx) / fx + extra * tan_x)
    ty = z_safe * torch.clamp(y / z_safe, min=-(cy / fy + extra * tan_y), max=(camera.height - cy) / fy + extra * tan_y)
    zero = torch.zeros_like(z_safe)
    J = torch.stack([fx / z_safe, zero, -fx * tx / z_safe**2, zero, fy / z_safe, -fy * ty / z_safe**2], -1).reshape(-1, 2, 3)
    cov2 = J @ cov_c @ J.transpose(1, 2)
    sxx, sxy, syy = cov2[:, 0, 0] + options.dilation, cov2[:, 0, 1], cov2[:, 1, 1] + options.dilation
    det = sxx * syy - sxy * sxy
    ok = in_depth & (det > 1e-12) & torch.isfinite(det)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([syy / det_safe, -sxy / det_safe, sxx / det_safe], -1)
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], -1)

    with torch.no_grad():
        k2 = _cutoff_sq(opacities, options)
        ex = torch.sqrt(k2 * sxx.clamp_min(0))
        ey = torch.sqrt(k2 * syy.clamp_min(0))
        u, v = means2d[:, 0], means2d[:, 1]
        on_image = (u + ex > 0) & (u - ex < camera.width) & (v + ey > 0) & (v - ey < camera.height)
        visible = ok & (k2 > 0) & on_image & torch.isfinite(means2d).all(-1)
    return Projection(means2d, conics, torch.stack([sxx, sxy, syy], -1), z, visible)


_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
          1.445305721320277, -0.5900435899266435)


def sh_view_colors(colors: Tensor, sh_rest: Tensor, means: Tensor, camera_position: Tensor, degree: int) -> Tensor:
    """View-dependent RGB [N, 3] = max(0, colors + sum over SH bands 1..degree of Y_k(dir) sh_rest[:, k-1]).

    colors [N, 3] are the DC colours (SH_C0 f_dc + 0.5, INRIA convention), sh_rest [N, K, 3] the higher
    bands in the INRIA order, dir the unit vector from the camera centre to each mean (as in 3DGS).
    """
    degree = min(degree, {3: 1, 8: 2, 15: 3}.get(int(sh_rest.shape[1]), 0))
    if degree == 0:
        return colors
    d = means - camera_position.to(means)
    x, y, z = (d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)).unbind(-1)
    basis = [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [_SH_C2[0] * x * y, _SH_C2[1] * y * z, _SH_C2[2] * (2 * zz - xx - yy), _SH_C2[3] * x * z,
                  _SH_C2[4] * (xx - yy)]
    if degree >= 3:
        basis += [_SH_C3[0] * y * (3 * xx - yy), _SH_C3[1] * x * y * z, _SH_C3[2] * y * (4 * zz - xx - yy),
                  _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _SH_C3[4] * x * (4 * zz - xx - yy),
                  _SH_C3[5] * z * (xx - yy), _SH_C3[6] * x * (xx - 3 * yy)]
    rest = sh_rest[:, : len(basis)].to(colors.dtype)
    return torch.clamp_min(colors + (torch.stack(basis, 1)[:, :, None] * rest).sum(1), 0)


def _cutoff_sq(opacities: Tensor, options: RasterOptions) -> Tensor:
    """[N] largest q = d^T conic d at which a pair can still count (0 or less: never)."""
    ratio = (opacities.detach() / options.alpha_threshold).clamp_min(1e-30) if options.alpha_threshold > 0 else None
    opac_limit = 2 * torch.log(ratio) if ratio is not None else torch.full_like(opacities, math.inf)
    return torch.clamp(opac_limit, max=options.sigma_cutoff**2)


def _pair_alpha(opac: Tensor, conic: Tensor, dx: Tensor, dy: Tensor, options: RasterOptions) -> tuple[Tensor, Tensor]:
    """(alpha, q) of pairs; q = d^T conic d."""
    q = conic[..., 0] * dx * dx + 2 * conic[..., 1] * dx * dy + conic[..., 2] * dy * dy
    alpha = torch.clamp(opac * torch.exp(-0.5 * q), max=options.max_alpha)
    return alpha, q


# --------------------------------------------------------------------------- fast path
class _WeightedScatter(torch.autograd.Function):
    """out[dst_k] += weight_k * values[src_k]  ->  [n_dst, C], chunked so no [pairs, C] tensor is kept."""

    @staticmethod
    def forward(ctx, values, weight, src, dst, n_dst, chunk):
        ctx.save_for_backward(values, weight, src, dst)
        ctx.n_src, ctx.chunk = values.shape[0], chunk
        return _scatter_chunked(values, weight, src, dst, n_dst, chunk)

    @staticmethod
    def backward(ctx, grad_out):
        values, weight, src, dst = ctx.saved_tensors
        grad_values = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_values = _scatter_chunked(grad_out, weight, dst, src, ctx.n_src, ctx.chunk)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(weight)
            for s in range(0, weight.shape[0], ctx.chunk):
                e = s + ctx.chunk
                grad_weight[s:e] = (values.index_select(0, src[s:e]) * grad_out.index_select(0, dst[s:e])).sum(-1)
        return grad_values, grad_weight, None, None, None, None


def _scatter_chunked(values, weight, src, dst, n_dst, chunk):
    """out[dst_k] += weight_k values[src_k] as a CSR sparse-dense product (rows must be sorted by dst: sorted
    here unless already so and the channel count makes it worth it), else chunked index_add."""
    n_pairs, channels = weight.shape[0], values.shape[1]
    dst_sorted = n_pairs < 2 or bool((dst[1:] >= dst[:-1]).all())
    if values.device.type == "cpu" and n_pairs and (dst_sorted or channels >= 8):
        if not dst_sorted:
            order = torch.argsort(dst, stable=True)
            dst, src, weight = dst.index_select(0, order), src.index_select(0, order), weight.index_select(0, order)
        crow = torch.zeros(n_dst + 1, dtype=torch.long, device=dst.device)
        crow[1:] = torch.cumsum(torch.bincount(dst, minlength=n_dst), 0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            matrix = torch.sparse_csr_tensor(crow, src, weight.to(values.dtype), size=(n_dst, values.shape[0]),
                                             check_invariants=False)
            return matrix @ values
    out = values.new_zeros((n_dst, channels))
    for s in range(0, n_pairs, chunk):
        e = s + chunk
        out.index_add_(0, dst[s:e], values.index_select(0, src[s:e]) * weight[s:e, None])
    return out


def weighted_scatter(values: Tensor, weight: Tensor, src: Tensor, dst: Tensor, n_dst: int) -> Tensor:
    """values [S, C], weight [P], src [P], dst [P] -> out [n_dst, C] with out[dst_k] += weight_k values[src_k]."""
    chunk = max(1, 8_000_000 // max(1, values.shape[1]))
    return _WeightedScatter.apply(values, weight, src, dst, n_dst, chunk)


@dataclass
class PairWeights:
    """Compositing weights of the (Gaussian, pixel) pairs that count, sorted by (pixel, depth)."""

    gaussian: Tensor  # [P] int64 Gaussian index
    pixel: Tensor     # [P] int64 flat pixel index row * W + col
    weight: Tensor    # [P] w = T * alpha (differentiable)
    n_pixels: int


def _candidate_pairs(proj: Projection, opacities: Tensor, order: Tensor, width: int, height: int,
                     options: RasterOptions) -> tuple[Tensor, Tensor]:
    """(rank [P], pixel [P]) of pairs inside each Gaussian's cutoff ellipse, listed in depth order.

    ``rank`` indexes ``order``. The ellipse q <= k2 (k2 from :func:`_cutoff_sq`, which already implies
    alpha >= alpha_threshold) is walked row by row: each (Gaussian, row) gets the exact x-span of the
    ellipse, widened by a hair so rounding never loses a pixel; the exact per-pair test is applied later.
    """
    means2d, conics, cov2d = (t.detach().index_select(0, order) for t in (proj.means2d, proj.conics, proj.cov2d))
    opac = opacities.detach().index_select(0, order)
    k2 = _cutoff_sq(opac, options) * (1 + 1e-5) + 1e-6
    u, v = means2d[:, 0], means2d[:, 1]
    ey = torch.sqrt(k2 * cov2d[:, 2])
    y0 = torch.clamp(torch.ceil(v - ey - 0.5), 0, height - 1).long()
    y1 = torch.clamp(torch.floor(v + ey - 0.5), 0, height - 1).long()
    n_rows = torch.where(v + ey - 0.5 >= 0, (y1 - y0 + 1).clamp_min(0), torch.zeros_like(y0))
    n_rows = torch.where(v - ey - 0.5 <= height - 1, n_rows, torch.zeros_like(n_rows))

    # (Gaussian, row) segments, in depth order
    seg_rank = torch.repeat_interleave(torch.arange(order.shape[0], device=order.device), n_rows)
    row_start = torch.cumsum(n_rows, 0) - n_rows
    row = y0.index_select(0, seg_rank) + torch.arange(seg_rank.shape[0], device=order.device) - row_start.index_select(0, seg_rank)
    a, b, c = (conics[:, i].index_select(0, seg_rank) for i in range(3))
    dy = row.to(u.dtype) + 0.5 - v.index_select(0, seg_rank)
    disc = (b * b - a * c) * dy * dy + a * k2.index_select(0, seg_rank)
    centre = u.index_select(0, seg_rank) - b * dy / a
    half = torch.sqrt(disc.clamp_min(0)) / a + 1e-4
    xs = torch.clamp(torch.ceil(centre - half - 0.5), 0, width - 1).long()
    xe = torch.clamp(torch.floor(centre + half - 0.5), 0, width - 1).long()
    inside = (disc >= 0) & (centre + half - 0.5 >= 0) & (centre - half - 0.5 <= width - 1)
    n_px = torch.where(inside, (xe - xs + 1).clamp_min(0), torch.zeros_like(xs))

    # pixels of each segment, in chunks of about max_pairs_per_chunk pairs; from the second chunk on,
    # pairs at pixels already opaque (T <= transmittance_stop after the nearer chunks) are dropped
    px_end = torch.cumsum(n_px, 0)
    seg_first = row * width + xs - (px_end - n_px)  # pixel of a segment's k-th pair = seg_first + global pair index
    total = int(px_end[-1]) if px_end.numel() else 0
    chunk = options.max_pairs_per_chunk
    bounds = [0]
    if total > chunk:
        cuts = torch.arange(chunk, total, chunk, device=px_end.device, dtype=px_end.dtype)
        bounds += torch.searchsorted(px_end, cuts, right=True).tolist()
    bounds = sorted(set(bounds + [seg_rank.shape[0]]))
    log_t = None
    prune = len(bounds) > 2 and options.transmittance_stop > 0
    ranks, pixels = [], []
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        start = int(px_end[s0 - 1]) if s0 else 0
        pair_seg = torch.repeat_interleave(torch.arange(s0, s1, device=order.device), n_px[s0:s1])
        pixel = seg_first.index_select(0, pair_seg) + torch.arange(start, start + pair_seg.shape[0], device=order.device)
        rank = seg_rank.index_select(0, pair_seg)
        if prune:
            if log_t is None:
                log_t = means2d.new_zeros(width * height)
            else:
                # margin: only pixels clearly past the stop, the exact float64 test comes later
                open_px = torch.nonzero(log_t.index_select(0, pixel) > math.log(options.transmittance_stop) - 1e-3).squeeze(1)
                pixel, rank = pixel.index_select(0, open_px), rank.index_select(0, open_px)
            m = means2d.index_select(0, rank)
            dx = torch.remainder(pixel, width).to(m.dtype) + 0.5 - m[:, 0]
            dy = torch.div(pixel, width, rounding_mode="floor").to(m.dtype) + 0.5 - m[:, 1]
            alpha, q = _pair_alpha(opac.index_select(0, rank), conics.index_select(0, rank), dx, dy, options)
            alpha = alpha * ((alpha >= options.alpha_threshold) & (q <= options.sigma_cutoff**2))
            log_t.index_add_(0, pixel, torch.log1p(-alpha))
        ranks.append(rank)
        pixels.append(pixel)
    if not ranks:
        empty = torch.zeros(0, dtype=torch.long, device=order.device)
        return empty, empty
    return torch.cat(ranks), torch.cat(pixels)


def _segment_starts(pixel: Tensor) -> tuple[Tensor, Tensor]:
    """(first [P] bool: pair opens a new pixel segment, segment [P] int64: segment id) of a pixel-sorted list."""
    first = torch.ones_like(pixel, dtype=torch.bool)
    if pixel.numel() > 1:
        first[1:] = pixel[1:] != pixel[:-1]
    return first, torch.cumsum(first, 0) - 1


class _CompositeWeights(torch.autograd.Function):
    """Per-pair compositing weights w = T * alpha of a (pixel, depth)-sorted pair list, with a hand-written backward.

    Inputs: means2d [N, 2], conics [N, 3], opacities [N] (differentiable); gaussian [P], pixel [P]
    (sorted by pixel, front to back inside a pixel). Outputs: weight [Q], gaussian [Q], pixel [Q] of
    the Q <= P pairs that count and come before their pixel's early stop.

    Backward (S_k = sum of g_j w_j over the pairs j behind k in the same pixel):
        dL/dalpha_k = g_k T_k - S_k / (1 - alpha_k)
        alpha = o G, G = exp(-q/2): dalpha/do = G, dalpha/dq = -alpha/2 (0 where alpha is clamped)
        q = a dx^2 + 2 b dx dy + c dy^2, dx = px - u, dy = py - v
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, gaussian, pixel, width: int, options: RasterOptions):
        dtype = means2d.dtype
        px = torch.remainder(pixel, width).to(dtype) + 0.5
        py = torch.div(pixel, width, rounding_mode="floor").to(dtype) + 0.5
        dx = px - means2d[:, 0].index_select(0, gaussian)
        dy = py - means2d[:, 1].index_select(0, gaussian)
        opac = opacities.index_select(0, gaussian)
        alpha, q = _pair_alpha(opac, conics.index_select(0, gaussian), dx, dy, options)
        counts = (alpha >= options.alpha_threshold) & (q <= options.sigma_cutoff**2)
        alpha = alpha * counts  # candidates just outside the ellipse: alpha 0, no effect on T
        # exclusive transmittance per pixel segment from a float64 cumulative sum of log(1 - alpha)
        log_keep = torch.log1p(-alpha).double()
        incl = torch.cumsum(log_keep, 0)
        first, segment = _segment_starts(pixel)
        seg_base = (incl - log_keep).index_select(0, torch.nonzero(first).squeeze(1)).index_select(0, segment)
        alive = counts
        if options.transmittance_stop > 0:
            alive = alive & ((incl - seg_base) > math.log(options.transmittance_stop))
        if not bool(alive.all()):
            idx = torch.nonzero(alive).squeeze(1)
            gaussian, pixel, alpha, dx, dy, opac = (t.index_select(0, idx) for t in (gaussian, pixel, alpha, dx, dy, opac))
            log_keep, incl, seg_base = log_keep.index_select(0, idx), incl.index_select(0, idx), seg_base.index_select(0, idx)
        transmittance = torch.exp(incl - log_keep - seg_base).to(dtype)
        weight = transmittance * alpha
        ctx.save_for_backward(conics, gaussian, pixel, alpha, transmittance, weight, dx, dy, opac)
        ctx.n, ctx.max_alpha = means2d.shape[0], options.max_alpha
        ctx.mark_non_differentiable(gaussian, pixel)
        return weight, gaussian, pixel

    @staticmethod
    def backward(ctx, grad_weight, _g, _p):
        conics, gaussian, pixel, alpha, transmittance, weight, dx, dy, opac = ctx.saved_tensors
        gw = (grad_weight * weight).double()
        csum = torch.cumsum(gw, 0)
        first, segment = _segment_starts(pixel)
        last = torch.ones_like(first)
        last[:-1] = first[1:]
        behind = (csum.index_select(0, torch.nonzero(last).squeeze(1)).index_select(0, segment) - csum).to(alpha.dtype)
        grad_alpha = grad_weight * transmittance - behind / (1 - alpha)
        grad_alpha = grad_alpha * (alpha < ctx.max_alpha)
        gauss_val = alpha / opac
        grad_q = -0.5 * alpha * grad_alpha
        a, b, c = (conics[:, i].index_select(0, gaussian) for i in range(3))
        per_pair = torch.stack([
            -2 * grad_q * (a * dx + b * dy),  # d/du
            -2 * grad_q * (b * dx + c * dy),  # d/dv
            grad_q * dx * dx, 2 * grad_q * dx * dy, grad_q * dy * dy,  # d/d(a, b, c)
            grad_alpha * gauss_val,  # d/do
        ], 1)
        per_gauss = per_pair.new_zeros((ctx.n, 6)).index_add_(0, gaussian, per_pair)
        return per_gauss[:, 0:2], per_gauss[:, 2:5], per_gauss[:, 5], None, None, None, None


def composite_pairs(proj: Projection, opacities: Tensor, width: int, height: int, options: RasterOptions) -> PairWeights:
    """Compositing weights of every contributing (Gaussian, pixel) pair (the fast path)."""
    device = proj.depths.device
    vis = torch.nonzero(proj.visible).squeeze(1)
    order = vis.index_select(0, torch.argsort(proj.depths.detach().index_select(0, vis), stable=True))
    if order.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return PairWeights(empty, empty, proj.depths.new_zeros(0), width * height)
    rank, pixel = _candidate_pairs(proj, opacities, order, width, height, options)
    # pairs arrive in depth order; a stable sort by pixel groups them per pixel, front to back
    pixel, perm = torch.sort(pixel, stable=True)
    gaussian = order.index_select(0, rank.index_select(0, perm))
    weight, gaussian, pixel = _CompositeWeights.apply(proj.means2d, proj.conics, opacities, gaussian, pixel, width, options)
    return PairWeights(gaussian, pixel, weight, width * height)


# --------------------------------------------------------------------------- brute force twin
def dense_weights_reference(proj: Projection, opacities: Tensor, width: int, height: int, options: RasterOptions,
                            pixel_block: int = 256) -> Tensor:
    """[H*W, N] compositing weights by brute force: every pixel against every visible Gaussian.

    Independent of the fast path (no bounding boxes, pair lists or sorting by pixel): per block of
    pixels a dense alpha matrix in depth order, transmittance by cumprod, early stop as a prefix mask.
    Memory is H*W*N; meant for tests and small benchmarks.
    """
    n = proj.depths.shape[0]
    vis = torch.nonzero(proj.visible).squeeze(1)
    order = vis[torch.argsort(proj.depths.detach()[vis], stable=True)]
    rows = []
    dtype = proj.means2d.dtype
    ys, xs = torch.meshgrid(torch.arange(height, device=proj.means2d.device),
                            torch.arange(width, device=proj.means2d.device), indexing="ij")
    centres = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(dtype) + 0.5
    mu, conic, opac = proj.means2d[order], proj.conics[order], opacities[order]
    for s in range(0, centres.shape[0], pixel_block):
        c = centres[s:s + pixel_block]
        dx = c[:, None, 0] - mu[None, :, 0]
        dy = c[:, None, 1] - mu[None, :, 1]
        alpha, q = _pair_alpha(opac[None, :], conic[None, :, :], dx, dy, options)
        counts = (alpha >= options.alpha_threshold) & (q <= options.sigma_cutoff**2)
        alpha = torch.where(counts, alpha, torch.zeros_like(alpha))
        keep_prod = torch.cumprod(1 - alpha, dim=1)
        t_excl = torch.cat([torch.ones_like(keep_prod[:, :1]), keep_prod[:, :-1]], 1)
        alive = (keep_prod > options.transmittance_stop).detach()
        w_sorted = t_excl * alpha * alive
        block = w_sorted.new_zeros((c.shape[0], n))
        rows.append(block.index_copy(1, order, w_sorted))
    return torch.cat(rows, 0) if rows else proj.depths.new_zeros((0, n))
