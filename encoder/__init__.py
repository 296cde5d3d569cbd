"""The Chorus encoder: Point Transformer V3 over 3D Gaussians.

Public API::

    from encoder import EncoderConfig, ChorusEncoder, EncoderPredictor, scene_to_input

``import encoder`` is cheap: spconv loads on first model construction, and the
training / segmentation / probing modules of this package load only when
imported by name (``encoder.pretrain`` is an entry module, never imported here).
"""

from .config import EncoderConfig
from .inputs import scene_to_input
from .predictor import EncoderPredictor, spatial_chunks
from .ptv3 import ChorusEncoder, EncoderStages

__all__ = [
    "EncoderConfig",
    "ChorusEncoder",
    "EncoderStages",
    "EncoderPredictor",
    "scene_to_input",
    "spatial_chunks",
]
