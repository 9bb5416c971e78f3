"""How many images may be in flight at once: the seed's MemoryOptimizer batch formula, fixed.

The seed estimated ``avg_pixels * 3 * 4`` bytes (float32 RGB) per image, doubled for the result,
and divided the budget by that. Its faults: the *average* size lets one large photo in a batch
of small ones blow the budget; it ignores that the original is decoded at full size before the
resize, that N variations plus the accepted ones are held for scoring, and the float32 SSIM
planes; and it divides by zero on an empty list. Here each image is costed from its own header
size and the run's settings, and the flow admits images while their sum fits the budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

from varflow.images.imageio import fit_within

_DECODE_BYTES_PER_PX = 4  # RGB(A) uint8 of the full-size decode
_GREY_STATS_BYTES_PER_PX = 17  # uint8 grey + four float32 planes (GreyImage)
_RGB_BYTES_PER_PX = 3


def estimate_image_bytes(width: int, height: int, *, max_side: int, count: int) -> int:
    """Peak bytes one image costs while it is optimized, varied, scored and de-duplicated."""
    ow, oh = fit_within(width, height, max_side)
    opt_px = ow * oh
    decode = width * height * _DECODE_BYTES_PER_PX
    # the optimized original + a candidate in RGB; grey statistics of the original, the
    # candidate and up to ``count`` accepted variations; one scratch plane set per SSIM pair.
    working = opt_px * (2 * _RGB_BYTES_PER_PX + (count + 3) * _GREY_STATS_BYTES_PER_PX)
    return decode + working


@dataclass
class MemoryWindow:
    """Admission control for images in flight: a byte budget and a count limit.

    One image is always admitted when nothing is in flight, however large, so a huge photo is
    processed alone rather than never.
    """

    budget_bytes: int
    max_images: int
    in_flight_bytes: int = 0
    in_flight: int = 0

    def admits(self, cost: int) -> bool:
        if self.in_flight == 0:
            return True
        return self.in_flight < self.max_images and self.in_flight_bytes + cost <= self.budget_bytes

    def enter(self, cost: int) -> None:
        self.in_flight += 1
        self.in_flight_bytes += cost

    def leave(self, cost: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= cost


_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator(*, mmap_threshold: int = 1 << 20, arena_max: int = 2) -> bool:
    """Make glibc give large image buffers back to the system when they are freed.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
    image-sized arrays come from the heap and their memory stays with the process (the peak RSS
    it saves is in docs/architecture.md). A fixed threshold (set through mallopt) turns that off. No-op off glibc;
    returns whether set.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        return bool(libc.mallopt(_M_ARENA_MAX, arena_max) == 1 and ok)
    except (OSError, AttributeError):
        return False
