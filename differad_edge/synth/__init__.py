"""Synthetic anomaly pairs (paper III-C, Algorithm 1), deterministic by seed and self-contained:
Perlin noise, textures and defect-free "normal" products are all procedural (numpy + OpenCV), so
training data, demos and tests need no downloads. Folders of real normals/textures can be used too.

One module per idea: ``noise`` (Perlin noise and masks, M_p), ``masks`` (foreground M_f, one
component M), ``textures`` (I_tex and its augmentation), ``normals`` (procedural products I_ref),
``pairs`` (Algorithm 1 itself), ``generate`` (training sets on disk), ``inspection`` (products with
good and defective parts for demos and engine tests). Everything is importable from here.
"""

from __future__ import annotations

from ._common import Size
from .generate import IMAGE_EXTS, SYNTH_SUBSET, generate_dataset
from .inspection import InspectionSet, Product, make_inspection_set, vary
from .masks import foreground_mask, largest_component
from .noise import fractal_noise, perlin_mask, perlin_noise
from .normals import PRODUCT_KINDS, procedural_normal
from .pairs import BETA_RANGE, NORMAL_PROB, SynthPair, synthesize_pair
from .textures import TEXTURE_FAMILIES, augment_texture, procedural_texture

__all__ = [
    "BETA_RANGE",
    "IMAGE_EXTS",
    "NORMAL_PROB",
    "PRODUCT_KINDS",
    "SYNTH_SUBSET",
    "TEXTURE_FAMILIES",
    "InspectionSet",
    "Product",
    "Size",
    "SynthPair",
    "augment_texture",
    "foreground_mask",
    "fractal_noise",
    "generate_dataset",
    "largest_component",
    "make_inspection_set",
    "perlin_mask",
    "perlin_noise",
    "procedural_normal",
    "procedural_texture",
    "synthesize_pair",
    "vary",
]
