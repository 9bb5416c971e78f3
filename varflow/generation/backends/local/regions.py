"""Object proposals by hierarchical grouping (selective search, Uijlings et al. 2013).

A small copy of the picture is over-segmented (Felzenszwalb's graph segmentation); adjacent
segments are then merged greedily, most similar first (colour histograms, small regions first,
regions that fill their joint box), until one region is left. Every region formed on the way is
a proposal: a spoon made of a highlight, a body and a shadow appears as the merge of the three.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import cv2
import numpy as np

BINS = 12  # histogram bins per Lab channel


@dataclass
class Proposal:
    members: list[int]  # segment labels
    size: int  # pixels (small image)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), small image


def segment(small: np.ndarray, *, scale: float = 90.0, min_size: int = 16) -> np.ndarray:
    from skimage.segmentation import felzenszwalb  # imported here: skimage is slow to import

    return felzenszwalb(small, scale=scale, sigma=0.8, min_size=min_size).astype(np.int32)


def proposals(small: np.ndarray, seg: np.ndarray) -> list[Proposal]:
    """Every region of the grouping hierarchy, the initial segments first."""
    h, w = seg.shape
    regions = _segments(small, seg)
    order = _group(regions, _adjacency(seg), float(h * w))
    return [Proposal(regions[r]["members"], int(regions[r]["size"]), regions[r]["box"]) for r in order]


def _segments(small: np.ndarray, seg: np.ndarray) -> dict[int, dict]:
    """Each initial segment: its colour histogram (summing to 1), size, box and members."""
    h, w = seg.shape
    n = int(seg.max()) + 1
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
    flat = seg.ravel()
    q = np.clip((lab.astype(np.int32) * BINS) >> 8, 0, BINS - 1)
    hist = np.zeros((n, 3 * BINS), np.float64)
    for c in range(3):
        idx = flat * (3 * BINS) + c * BINS + q[:, :, c].ravel()
        hist += np.bincount(idx, minlength=n * 3 * BINS).reshape(n, 3 * BINS)
    size = np.bincount(flat, minlength=n).astype(np.float64)
    hist /= np.maximum(size, 1)[:, None] * 3  # each region's histogram sums to 1
    ys, xs = np.divmod(np.arange(h * w), w)
    x0 = np.full(n, w, np.int64)
    y0 = np.full(n, h, np.int64)
    x1 = np.zeros(n, np.int64)
    y1 = np.zeros(n, np.int64)
    np.minimum.at(x0, flat, xs)
    np.minimum.at(y0, flat, ys)
    np.maximum.at(x1, flat, xs + 1)
    np.maximum.at(y1, flat, ys + 1)
    return {i: {"hist": hist[i], "size": size[i], "box": (int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])),
                "members": [i]} for i in range(n)}


def _adjacency(seg: np.ndarray) -> dict[int, set[int]]:
    """Which segments touch which (4-neighbourhood)."""
    neighbours: dict[int, set[int]] = {i: set() for i in range(int(seg.max()) + 1)}
    for a, b in ((seg[:, :-1], seg[:, 1:]), (seg[:-1], seg[1:])):
        diff = a != b
        pairs = np.unique(np.stack([np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])], 1), axis=0)
        for i, j in pairs.tolist():
            neighbours[i].add(j)
            neighbours[j].add(i)
    return neighbours


def _similarity(ri: dict, rj: dict, total: float) -> float:
    """Colour overlap + how small the pair is + how well it fills its box (selective search)."""
    colour = float(np.minimum(ri["hist"], rj["hist"]).sum())
    both = ri["size"] + rj["size"]
    bx0, by0 = min(ri["box"][0], rj["box"][0]), min(ri["box"][1], rj["box"][1])
    bx1, by1 = max(ri["box"][2], rj["box"][2]), max(ri["box"][3], rj["box"][3])
    fill = 1.0 - ((bx1 - bx0) * (by1 - by0) - both) / total
    return colour + (1.0 - both / total) + fill


def _group(regions: dict[int, dict], neighbours: dict[int, set[int]], total: float) -> list[int]:
    """Merge the most similar neighbours until one region is left; every region made is added to
    ``regions``. Returns the regions in the order they exist (segments first)."""
    n = len(regions)
    heap = [(-_similarity(regions[i], regions[j], total), i, j) for i in range(n) for j in neighbours[i] if i < j]
    heapq.heapify(heap)
    alive = set(range(n))
    order = list(range(n))
    nxt = n
    while heap:
        _, i, j = heapq.heappop(heap)
        if i not in alive or j not in alive:
            continue
        ri, rj = regions[i], regions[j]
        both = ri["size"] + rj["size"]
        regions[nxt] = {
            "hist": (ri["hist"] * ri["size"] + rj["hist"] * rj["size"]) / both,
            "size": both,
            "box": (min(ri["box"][0], rj["box"][0]), min(ri["box"][1], rj["box"][1]),
                    max(ri["box"][2], rj["box"][2]), max(ri["box"][3], rj["box"][3])),
            "members": ri["members"] + rj["members"],
        }
        near = (neighbours.pop(i) | neighbours.pop(j)) - {i, j}
        alive -= {i, j}
        for k in near:
            neighbours[k] -= {i, j}
            neighbours[k].add(nxt)
        neighbours[nxt] = near
        alive.add(nxt)
        for k in near:
            heapq.heappush(heap, (-_similarity(regions[k], regions[nxt], total), min(k, nxt), max(k, nxt)))
        order.append(nxt)
        nxt += 1
    return order
