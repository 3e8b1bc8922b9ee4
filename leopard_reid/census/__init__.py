"""Census workflow: camera-trap detections in; identities, capture histories and a review page out.

:func:`run_census` takes MegaDetector batch output (both published layouts), crops the animal detections,
matches them against a gallery of known individuals, pools the evidence of each camera burst, clusters the
unmatched ones into provisional new individuals (``NEW-0001`` ...), and writes into ``out``:

* ``matches.csv``: one row per detection (identity, calibrated score, decision, top candidates, burst,
  candidate left/right flank link);
* ``capthist.txt`` + ``traps.txt``: capture histories for R ``secr::read.capthist(captfile, trapfile,
  fmt = "trapID")``, and with ``exports`` the oSCR, camtrapR and Camtrap DP files (:mod:`leopard_reid.exports`);
* ``review.html``: one self-contained page (images as data URIs, inline CSS/JS, no external link) showing
  each detection beside its candidates and the verified keypoint correspondences, where a person accepts,
  picks another candidate, marks new or unusable, and downloads ``decisions.csv`` (:mod:`leopard_reid.review`);
* ``decisions.csv``: the same decisions as a template to edit by hand;
* ``errors.csv``: the inputs that were skipped and why.

:func:`apply_review` then adds the confirmed detections to the gallery (atomically, keeping ``<file>.bak``).

Decisions use the calibrated P(same individual) of the fused method: a burst whose best known identity has
P >= ``Calibration.threshold`` is that identity, otherwise it is new; scores inside
``Calibration.uncertain_band`` are marked ``uncertain`` (identity still proposed). P is discounted for a gallery
of more identities than the calibration was fitted on (:meth:`Calibration.for_identities`): the best of more
known animals is more often a wrong one that scores high. Left and right flanks are
matched within their side: their patterns differ. What links them is a paired station (cameras facing each
other, grouped by the cameras table's ``station`` column or sharing one ``camera`` name) photographing one
animal's two flanks within ``pair_seconds``. When that pairing is unambiguous (one burst per flank), the two
provisional new individuals become one ``NEW-xxxx``, and a new flank seen with a known individual's other
flank (at most of its paired visits, and with no other known individual) gets that identity as
``uncertain``, for a person to confirm on the review page; the ``flank_link`` column names the partner
detections. Nothing is written to the gallery before review.

Where things are (a package; everything public is importable from here):

* :mod:`.pipeline`: :func:`run_census` and :class:`CensusOptions`, the stages in order;
* :mod:`.detections`: MegaDetector output, image headers, pixel boxes, detections joined with sightings;
* :mod:`.sightings` and :mod:`.dates`: the sightings and cameras tables, date parsing, the season's start;
* :mod:`.scoring`: :class:`ChunkScores` and :func:`score_chunk` (the unit of work, also on Dask workers);
* :mod:`.grouping`: bursts, opposite-flank partners, paired bursts, flank links;
* :mod:`.identities`: clustering unmatched bursts into provisional ``NEW-xxxx`` individuals (a sparse graph
  of shortlist-verified pairs: the cost grows with the season, not its square);
* :mod:`.state`: each scored chunk saved in ``out/.census-state`` as it finishes, read back on a rerun;
* :mod:`.outputs`: the matches table, ``decisions.csv``, ``census.json``, the review summary;
* :mod:`.apply`: :func:`apply_review`;
* :mod:`.results`: :class:`CensusResult`, :class:`CensusError` and the file columns.

The ``leopard-reid census`` commands are in :mod:`leopard_reid.cli`. Importing this package is cheap (numpy,
pandas, torch... are imported inside the functions).
"""

from __future__ import annotations

from ..exports import write_capthist  # moved to exports; kept importable from here
from .apply import apply_review
from .dates import DATE_ORDERS
from .detections import read_detections
from .pipeline import CensusOptions, run_census
from .results import DECISION_COLUMNS, MATCH_COLUMNS, NEW_PREFIX, CensusError, CensusResult
from .scoring import ChunkScores, score_chunk

__all__ = [
    "DATE_ORDERS",
    "DECISION_COLUMNS",
    "MATCH_COLUMNS",
    "NEW_PREFIX",
    "CensusError",
    "CensusOptions",
    "CensusResult",
    "ChunkScores",
    "apply_review",
    "read_detections",
    "run_census",
    "score_chunk",
    "write_capthist",
]
