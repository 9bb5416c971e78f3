"""The offline local generator: natural variations from real image operations, no model, no
network.

``LocalGenerator`` turns one optimized RGB photo into one variation a person would keep: a
photo-app look, a new framing, or an object removed, added or moved, made with OpenCV, numpy and
scikit-image. Nothing is drawn on the picture to please a metric (no grids, hatching, borders,
cells or panels): a variation is judged as a photo.

Modules, one job each:

``vocabulary``   the prompt words it understands (grades, renderings) and ``parse_prompt``
``looks``        colour grades (tone curves, Lab/YCrCb colour moves) and renderings (cartoon,
                 sketch, watercolour, painting, HDR, glow, tilt-shift, poster)
``composition``  recrop around the subject, gentle perspective or tilt, mirror, combinations
``saliency``     where the subject is (colour contrast, unlike the border, centre prior)
``regions``      object proposals (graph segmentation + hierarchical grouping)
``objects``      which regions are editable objects; remove / add / move them
``fill``         patch-based completion of a hole (what plausibly lies behind an object)
``generator``    ``LocalGenerator``: decode, plan from type + prompt + seed, render, write
``imaging``      small shared helpers

Every random choice comes from ``numpy.random.default_rng(request.seed)``: the same request
gives the same bytes, another seed another variation (another look, crop or object).
"""

from .generator import LocalGenerator
from .vocabulary import GRADE_KEYWORDS, STYLE_KEYWORDS, parse_prompt

__all__ = ["GRADE_KEYWORDS", "LocalGenerator", "STYLE_KEYWORDS", "parse_prompt"]
