"""A preview picture of a generated room: a corner view and a top-down view side by side (docs/synth_room.png).

    python -m data.synth.preview --seed 26 --out docs/synth_room.png
"""

from __future__ import annotations

import argparse

import numpy as np


def render_preview(scene, meta: dict, width: int = 400, height: int = 300) -> np.ndarray:
    """(H, 2W, 3) uint8: a perspective view from a high corner and a top-down view of ``scene``."""
    from ..camera import look_at
    from ..render import rasterize

    poly = np.asarray(meta["room"]["polygon"], float)
    lo, hi = poly.min(0), poly.max(0)
    c = (lo + hi) / 2
    views = (((lo[0] + 0.3, lo[1] + 0.3, 2.3), (c[0] + 0.5, c[1] + 0.5, 0.5), 80.0),
             ((c[0], c[1] - 0.01, 9.0), (c[0], c[1], 0.0), 45.0))
    imgs = []
    for eye, target, fov in views:
        out = rasterize(scene, look_at(eye, target, width=width, height=height, fov_deg=fov))
        imgs.append((out.color.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8))
    return np.concatenate(imgs, 1)


def main(argv=None) -> int:
    from PIL import Image

    from .room import generate_room

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=26)
    p.add_argument("--density", type=float, default=1.0)
    p.add_argument("--out", default="docs/synth_room.png")
    args = p.parse_args(argv)
    scene, meta = generate_room(args.seed, density=args.density)
    img = render_preview(scene, meta)
    Image.fromarray(img).quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {meta['room']['type']} ({meta['room']['shape']}), {len(scene)} Gaussians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
