"""Pattern-level keypoint matching: RootSIFT features, LNBNN one-vs-many voting, geometric verification.

Global CNN embeddings of a spot pattern are weak on real leopards; matching the spots themselves is what
works (HotSpotter, Crall et al. 2013).  This package

1. extracts RootSIFT keypoints from a crop and from affine-tilted views of it (ASIFT, Morel & Yu 2009:
   a coat photographed obliquely in one picture still matches), upscaling tiny crops first
   (:func:`extract_features`), and stores them compactly (uint8 descriptors, :func:`pack_features`);
2. scores a query against every gallery exemplar at once with a local naive-Bayes nearest-neighbour
   (LNBNN) vote over one approximate nearest-neighbour index of all gallery descriptors
   (:class:`LocalMatcher`; FLANN kd-trees, or compressed faiss IVF-PQ codes for a catalogue);
3. re-scores a shortlist by pairwise matching plus exhaustive similarity-transform verification
   (:func:`verify`), because two different animals with similar spot statistics share many similar
   descriptors but almost never a consistent spatial layout.

The three steps are the modules :mod:`~leopard_reid.local.features` (1),
:mod:`~leopard_reid.local.lnbnn` with its indexes in :mod:`~leopard_reid.local.index` (2) and
:mod:`~leopard_reid.local.verification` (3); every public name is re-exported here
(``from leopard_reid.local import LocalMatcher``).
"""

from __future__ import annotations

from .features import (
    DESCRIPTOR_DIM,
    LocalFeatures,
    as_float_descriptors,
    extract_features,
    extractor_options,
    options_for_image,
    pack_features,
    root_sift,
    unpack_features,
)
from .lnbnn import LocalMatcher
from .verification import Verification, ratio_matches, verify, verify_matches

__all__ = [
    "DESCRIPTOR_DIM",
    "LocalFeatures",
    "LocalMatcher",
    "Verification",
    "as_float_descriptors",
    "extract_features",
    "extractor_options",
    "options_for_image",
    "pack_features",
    "ratio_matches",
    "root_sift",
    "unpack_features",
    "verify",
    "verify_matches",
]
