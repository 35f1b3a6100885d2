"""ForgerySynth: procedural forgeries on real photographs with exact masks and quadruples.

``synthesize`` writes a data set; ``FAMILIES`` holds the manipulation families as pure functions
``(image, rng, *, donor=None) -> Manipulation``.
"""

from forenx.data.synth.generator import SynthSummary, synthesize
from forenx.data.synth.manipulations import (
           FAMILIES,
           STRENGTH_RULES,
           Manipulation,
           manipulation,
           severity_from_strength,
)

__all__ = ["FAMILIES", "STRENGTH_RULES", "Manipulation", "SynthSummary", "manipulation", "severity_from_strength",
           "synthesize"]
