"""Where a manipulated region's blocks are on a (H/8, W/8) map, for the tests of the forensic maps."""

from __future__ import annotations

import torch


def inside_and_far(maps: torch.Tensor, box: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of a ``(H/8, W/8)`` map: the blocks well inside ``box`` (x0, y0, x1, y1 in pixels; two
    blocks in from its edge) and those far outside it (four blocks or more away)."""
    x0, y0, x1, y1 = (v // 8 for v in box)
    inside = torch.zeros_like(maps, dtype=torch.bool)
    inside[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = True
    near = torch.zeros_like(inside)
    near[max(0, y0 - 4):y1 + 4, max(0, x0 - 4):x1 + 4] = True
    return inside, ~near
