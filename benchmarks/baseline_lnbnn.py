"""A plain HotSpotter-style baseline: the yardstick every matching default must beat.

RootSIFT (1,000 keypoints, image resized to an 800 px long side), one FLANN kd-tree index over every
image's descriptors, and a one-vs-many LNBNN vote (Crall et al. 2013): each query descriptor's k nearest
neighbours from other images vote ``d_(k+1) - d_i`` for their image's identity, one vote per identity and
descriptor. No geometric verification, no affine views, no calibration. Leave-one-out: the query's own
descriptors never vote. This is deliberately independent of the library's code, so that a library change
cannot move the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def rootsift_features(path: str, *, max_keypoints: int = 1000, long_side: int = 800) -> np.ndarray:
    """float32 (n, 128) RootSIFT descriptors of the image at ``path`` (greyscale, long side ``long_side``)."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise OSError(f"{path}: cannot read image")
    s = long_side / max(gray.shape)
    gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    _, desc = cv2.SIFT_create(nfeatures=max_keypoints).detectAndCompute(gray, None)
    if desc is None:
        return np.zeros((0, 128), np.float32)
    desc = desc / np.maximum(desc.sum(1, keepdims=True), 1e-7)
    return np.sqrt(desc).astype(np.float32)


def lnbnn_scores(descriptors: Sequence[np.ndarray], labels: Sequence[str], *, k: int = 4) -> np.ndarray:
    """(n_images, n_images) leave-one-out score of each query image against each other image's identity.

    Entry ``[q, j]`` is the LNBNN vote of query ``q`` for the identity of image ``j`` (identical for every
    image of that identity), ``-inf`` on the diagonal.
    """
    labels = np.asarray(labels, dtype=object)
    names, name_of = np.unique(labels, return_inverse=True)
    owner = np.repeat(np.arange(len(descriptors)), [len(d) for d in descriptors])
    data = np.concatenate(descriptors).astype(np.float32)
    cv2.setRNGSeed(0)
    index = cv2.flann_Index(data, {"algorithm": 1, "trees": 4})
    n = len(descriptors)
    out = np.full((n, n), -np.inf)
    extra = 2 * k  # neighbours from the query's own image are skipped; fetch enough to have k + 1 left
    for q, desc in enumerate(descriptors):
        votes = np.zeros(len(names))
        if len(desc):
            idx, dist = index.knnSearch(desc, k + 1 + extra, params={"checks": 128})
            dist = np.sqrt(np.maximum(dist.astype(np.float64), 0))
            for row_i, row_d in zip(idx, dist):
                keep = owner[row_i] != q
                row_i, row_d = row_i[keep][: k + 1], row_d[keep][: k + 1]
                if len(row_i) < 2:
                    continue
                norm = row_d[-1]
                seen = set()
                for i, d in zip(row_i[:-1], row_d[:-1]):
                    name = name_of[owner[i]]
                    if name not in seen:  # one vote per identity and query descriptor
                        seen.add(name)
                        votes[name] += norm - d
        out[q] = votes[name_of]
        out[q, q] = -np.inf
    return out
