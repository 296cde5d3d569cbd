"""Differentiable Gaussian rasterization with one API and two backends.

``rasterize(scene, camera, features)`` renders colour, expected depth, alpha, an optional feature
map (any number of channels) and per-Gaussian accumulated compositing weights
``weights_i = sum_p T_ip alpha_ip``. ``accumulate_to_gaussians`` is the transpose: it pulls pixel
values back onto the Gaussians with the same weights (the lifting of paper Eq. 3).

Backends:
  "torch"  pure PyTorch (``data.raster_torch``): runs anywhere, autograd for every input; the reference.
  "gsplat" ``gsplat.rasterization`` (CUDA only, imported lazily).
  "auto"   gsplat when the Gaussians are on a CUDA device and gsplat imports, torch otherwise.

The math and its conventions are documented in :mod:`data.raster_torch`. Colours are the DC
colours of the scene unless ``RasterOptions(sh_degree=...)`` asks for view-dependent SH colours. Command line: ``python -m data.render --help``.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Camera
from .raster_torch import (
    PairWeights,
    RasterOptions,
    composite_pairs,
    dense_weights_reference,
    project_gaussians,
    sh_view_colors,
    weighted_scatter,
)
from .scene import GaussianScene

__all__ = ["RasterOptions", "RenderOutput", "rasterize", "rasterize_gaussians", "rasterize_reference",
           "accumulate_to_gaussians", "pair_weights"]

BACKENDS = ("auto", "torch", "gsplat")


@dataclass
class RenderOutput:
    """One rendered view (H x W pixels, N Gaussians)."""

    color: Tensor              # [H, W, 3] composited colour over the background
    depth: Tensor              # [H, W] expected camera depth sum_i w_i z_i / alpha, 0 where alpha == 0
    alpha: Tensor              # [H, W] accumulated opacity sum_i w_i
    features: Tensor | None    # [H, W, C] sum_i w_i f_i (no background), None when no features were given
    weights: Tensor            # [N] per-Gaussian accumulated compositing weight sum_p T_ip alpha_ip


def _check_inputs(means, quats, scales, opacities, colors, features, camera):
    n = means.shape[0]
    expected = {"means": (means, (n, 3)), "quats": (quats, (n, 4)), "scales": (scales, (n, 3)),
                "opacities": (opacities, (n,)), "colors": (colors, (n, 3))}
    for name, (value, shape) in expected.items():
        if tuple(value.shape) != shape:
            raise ValueError(f"rasterize: '{name}' has shape {tuple(value.shape)}, expected {shape}")
    if features is not None and (features.ndim != 2 or features.shape[0] != n):
        raise ValueError(f"rasterize: 'features' has shape {tuple(features.shape)}, expected ({n}, C)")
    if not isinstance(camera, Camera):
        raise TypeError(f"rasterize: 'camera' must be a data.camera.Camera, got {type(camera).__name__}")


@functools.lru_cache(maxsize=1)
def _gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"rasterize: backend={backend!r}, expected one of {BACKENDS}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and _gsplat_available() else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError(f"rasterize: backend='gsplat' needs CUDA tensors, got device {device}")
    return backend


def rasterize(scene: GaussianScene, camera: Camera, features: Tensor | None = None, backend: str = "auto",
              options: RasterOptions | None = None) -> RenderOutput:
    """Render ``scene`` from ``camera``; ``features`` [N, C] (any C) are rendered like colours."""
    return rasterize_gaussians(scene.means, scene.quats, scene.scales, scene.opacities, scene.colors, camera,
                               features, backend=backend, options=options, sh_rest=scene.sh_rest)


def rasterize_gaussians(means: Tensor,      # [N, 3]
                        quats: Tensor,      # [N, 4] wxyz
                        scales: Tensor,     # [N, 3] standard deviations
                        opacities: Tensor,  # [N]
                        colors: Tensor,     # [N, 3]
                        camera: Camera,
                        features: Tensor | None = None,  # [N, C]
                        *, backend: str = "auto", options: RasterOptions | None = None,
                        sh_rest: Tensor | None = None,  # [N, K, 3], used when options.sh_degree > 0
                        ) -> RenderOutput:
    """Functional form of :func:`rasterize` over plain tensors (any float dtype, e.g. float64 for checks)."""
    options = options or RasterOptions()
    _check_inputs(means, quats, scales, opacities, colors, features, camera)
    if options.sh_degree > 0 and sh_rest is not None:
        colors = sh_view_colors(colors, sh_rest, means, camera.position, options.sh_degree)
    if _resolve_backend(backend, means.device) == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, camera, features, options)
    proj = project_gaussians(means, quats, scales, opacities, camera, options)
    pairs = composite_pairs(proj, opacities, camera.width, camera.height, options)
    return _render_from_pairs(pairs, proj.depths, colors, features, camera, options)


def pair_weights(scene: GaussianScene, camera: Camera, options: RasterOptions | None = None) -> PairWeights:
    """The (Gaussian, pixel, weight) triples of the torch path: a sparse [H*W, N] weight matrix."""
    options = options or RasterOptions()
    proj = project_gaussians(scene.means, scene.quats, scene.scales, scene.opacities, camera, options)
    return composite_pairs(proj, scene.opacities, camera.width, camera.height, options)


def _finish(sums: Tensor, weights: Tensor, features: Tensor | None, camera: Camera, options: RasterOptions) -> RenderOutput:
    """sums [H*W, 5] = (sum w c, sum w z, sum w) -> RenderOutput."""
    h, w = camera.height, camera.width
    alpha = sums[:, 4]
    background = torch.tensor(options.background, dtype=sums.dtype, device=sums.device)
    color = sums[:, :3] + (1 - alpha)[:, None] * background
    has = alpha > 0
    depth = torch.where(has, sums[:, 3] / torch.where(has, alpha, torch.ones_like(alpha)), torch.zeros_like(alpha))
    return RenderOutput(color.reshape(h, w, 3), depth.reshape(h, w), alpha.reshape(h, w),
                        None if features is None else features.reshape(h, w, -1), weights)


def _render_from_pairs(pairs: PairWeights, depths: Tensor, colors: Tensor, features: Tensor | None, camera: Camera,
                       options: RasterOptions) -> RenderOutput:
    values = torch.cat([colors, depths[:, None], torch.ones_like(depths)[:, None]], 1)
    sums = weighted_scatter(values, pairs.weight, pairs.gaussian, pairs.pixel, pairs.n_pixels)
    weights = pairs.weight.new_zeros(colors.shape[0]).index_add(0, pairs.gaussian, pairs.weight)
    feat = None
    if features is not None:
        feat = weighted_scatter(features.to(colors.dtype), pairs.weight, pairs.gaussian, pairs.pixel, pairs.n_pixels)
    return _finish(sums, weights, feat, camera, options)


def rasterize_reference(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                        camera: Camera, features: Tensor | None = None,
                        options: RasterOptions | None = None) -> RenderOutput:
    """Brute-force twin of the torch backend (dense [pixels, Gaussians] weights). Tiny images only."""
    options = options or RasterOptions()
    _check_inputs(means, quats, scales, opacities, colors, features, camera)
    proj = project_gaussians(means, quats, scales, opacities, camera, options)
    dense = dense_weights_reference(proj, opacities, camera.width, camera.height, options)  # [H*W, N]
    depths = torch.where(proj.visible, proj.depths, torch.zeros_like(proj.depths))
    values = torch.cat([colors, depths[:, None], torch.ones_like(depths)[:, None]], 1)
    feat = None if features is None else dense @ features.to(colors.dtype)
    return _finish(dense @ values, dense.sum(0), feat, camera, options)


def accumulate_to_gaussians(scene: GaussianScene, camera: Camera, pixel_values: Tensor,  # [H, W, C]
                            options: RasterOptions | None = None, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(sum_p w_ip v_p [N, C], sum_p w_ip [N]): pixel values pulled back onto the Gaussians.

    Dividing the first by the second (where it is > 0) gives each Gaussian the weighted mean of the
    pixels it contributes to; summing both over views first gives the multi-view average.
    """
    options = options or RasterOptions()
    if pixel_values.ndim != 3 or tuple(pixel_values.shape[:2]) != (camera.height, camera.width):
        raise ValueError(f"accumulate_to_gaussians: pixel_values has shape {tuple(pixel_values.shape)}, "
                         f"expected ({camera.height}, {camera.width}, C)")
    values = pixel_values.to(device=scene.means.device, dtype=scene.means.dtype)
    if _resolve_backend(backend, scene.means.device) == "gsplat":
        return _accumulate_gsplat(scene, camera, values, options)
    pairs = pair_weights(scene, camera, options)
    flat = values.reshape(-1, values.shape[-1])
    sums = weighted_scatter(flat, pairs.weight, pairs.pixel, pairs.gaussian, len(scene))
    weights = pairs.weight.new_zeros(len(scene)).index_add(0, pairs.gaussian, pairs.weight)
    return sums, weights


# --------------------------------------------------------------------------- gsplat backend
def _gsplat_call(means, quats, scales, opacities, channels, camera: Camera, options: RasterOptions, render_mode: str):
    from gsplat import rasterization

    renders, alphas, _ = rasterization(
        means, quats, scales, opacities, channels,
        viewmats=camera.world_to_cam.to(means)[None], Ks=camera.K.to(means)[None],
        width=camera.width, height=camera.height, near_plane=camera.near, far_plane=camera.far,
        eps2d=options.dilation, tile_size=options.tile_size, packed=False, render_mode=render_mode,
        rasterize_mode="classic",
    )
    return renders[0], alphas[0, ..., 0]


def _rasterize_gsplat(means, quats, scales, opacities, colors, camera, features, options) -> RenderOutput:
    # Per-Gaussian weights by an autograd trick: d(sum of a rendered probe channel)/d(probe_i) = sum_p w_ip.
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        probe = torch.zeros(means.shape[0], 1, dtype=means.dtype, device=means.device, requires_grad=True)
        parts = [colors] + ([features.to(colors.dtype)] if features is not None else []) + [probe]
        image, alpha = _gsplat_call(means, quats, scales, opacities, torch.cat(parts, 1), camera, options, "RGB+ED")
        (weights,) = torch.autograd.grad(image[..., -2].sum(), probe, retain_graph=keep_graph)
    n_feat = 0 if features is None else features.shape[1]
    background = torch.tensor(options.background, dtype=image.dtype, device=image.device)
    color = image[..., :3] + (1 - alpha)[..., None] * background
    feat = image[..., 3:3 + n_feat] if features is not None else None
    depth = torch.where(alpha > 0, image[..., -1], torch.zeros_like(alpha))
    out = RenderOutput(color, depth, alpha, feat, weights[:, 0].detach())
    if not keep_graph:
        out = RenderOutput(*(None if t is None else t.detach() for t in (out.color, out.depth, out.alpha, out.features, out.weights)))
    return out


def _accumulate_gsplat(scene, camera, values, options) -> tuple[Tensor, Tensor]:
    # sum_p w_ip v_p is the gradient of sum_p <v_p, render_p(probe)> with respect to per-Gaussian probe values.
    with torch.enable_grad():
        probe = torch.zeros(len(scene), values.shape[-1] + 1, dtype=values.dtype, device=values.device, requires_grad=True)
        image, _ = _gsplat_call(scene.means.detach(), scene.quats.detach(), scene.scales.detach(),
                                scene.opacities.detach(), probe, camera, options, "RGB")
        target = torch.cat([values, torch.ones_like(values[..., :1])], -1)
        (grad,) = torch.autograd.grad((image * target).sum(), probe)
    return grad[:, :-1], grad[:, -1]


# --------------------------------------------------------------------------- command line
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data.render", description=(
        "Render one automatically sampled view (data.camera.sample_views) of a Gaussian scene to a PNG."))
    parser.add_argument("--scene", required=True, help="scene file or folder, anything data.load_scene reads")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--view", type=int, default=0, help="index into the sampled views (default 0)")
    parser.add_argument("--fov", type=float, default=70.0, help="horizontal field of view in degrees (default 70)")
    parser.add_argument("--seed", type=int, default=0, help="view sampling seed (default 0)")
    parser.add_argument("--depth-out", default=None, help="optional PNG path for a colour-mapped depth image")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="rasterizer backend (default auto)")
    parser.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3),
                        help="view-dependent colour up to this SH band when the scene has sh_rest (default 3)")
    args = parser.parse_args(argv)

    import numpy as np
    from PIL import Image

    from . import load_scene
    from .camera import sample_views

    scene = load_scene(args.scene)
    device = "cuda" if args.backend != "torch" and torch.cuda.is_available() else "cpu"
    scene = scene.to(device)
    views = sample_views(scene, width=args.width, height=args.height, fov_deg=args.fov, seed=args.seed)
    if not 0 <= args.view < len(views):
        parser.error(f"--view {args.view}: the scene has {len(views)} sampled views (0..{len(views) - 1})")
    with torch.no_grad():
        out = rasterize(scene, views[args.view].to(device), backend=args.backend,
                        options=RasterOptions(sh_degree=args.sh_degree))
    img = (out.color.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(img).save(args.out)
    if args.depth_out:
        import matplotlib

        depth = out.depth.cpu().numpy()
        valid = depth > 0
        scale = depth[valid].max() if valid.any() else 1.0
        rgba = matplotlib.colormaps["turbo"](depth / scale)
        rgba[~valid] = 0
        Image.fromarray((rgba[..., :3] * 255).astype(np.uint8)).save(args.depth_out)
    pos = views[args.view].position.tolist()
    print(f"{args.out}: view {args.view}/{len(views)} at ({pos[0]:.2f}, {pos[1]:.2f}, {pos[2]:.2f}), "
          f"{len(scene)} Gaussians, {int((out.weights > 0).sum())} contribute, coverage {float((out.alpha > 0.5).float().mean()):.2f}")


if __name__ == "__main__":
    main()
