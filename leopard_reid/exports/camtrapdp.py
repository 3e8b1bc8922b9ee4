"""Camtrap DP 1.0 (https://camtrap-dp.tdwg.org): ``datapackage.json``, ``deployments.csv``, ``media.csv`` and
``observations.csv``, one machine observation per detection."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import ExportError, _intervals, _safe_id, _write_csv, _write_text

if TYPE_CHECKING:
    import pandas as pd

_DP_VERSION = "1.0"
_DP_BASE = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{_DP_VERSION}"
#: Camtrap DP 1.0 table fields in schema order (``<table>-table-schema.json``): every column is written, in this
#: order, empty where unknown, so a validator matching the header against the schema finds each one.
DP_FIELDS = {
    "deployments": [
        "deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
        "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
        "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse",
        "featureType", "habitat", "deploymentGroups", "deploymentTags", "deploymentComments"],
    "media": [
        "mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
        "fileMediatype", "exifData", "favorite", "mediaComments"],
    "observations": [
        "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
        "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior",
        "individualID", "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX", "bboxY",
        "bboxWidth", "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp",
        "classificationProbability", "observationTags", "observationComments"],
}



def _iso(t: datetime, offset: str) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + offset


def _stable_id(prefix: str, *parts: Any) -> str:
    return prefix + hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def _latlon(cameras: pd.DataFrame, source: str = "cameras table") -> tuple[Any, Any]:
    """The cameras table's WGS84 columns (``latitude``/``longitude`` or ``lat``/``lon``), checked."""
    import pandas as pd

    for a, b in (("latitude", "longitude"), ("lat", "lon")):
        if a in cameras.columns and b in cameras.columns:
            lat, lon = pd.to_numeric(cameras[a], errors="coerce"), pd.to_numeric(cameras[b], errors="coerce")
            bad = lat.isna() | lon.isna() | (lat.abs() > 90) | (lon.abs() > 180)
            if bad.any():
                raise ExportError(f"{source}: {a}/{b} of camera(s) {', '.join(cameras['camera'][bad].astype(str))}"
                                  " are not WGS84 decimal degrees")
            return lat, lon
    raise ExportError(f"{source}: the camtrapdp export needs latitude and longitude columns (WGS84 decimal "
                      "degrees; x and y are projected metres)")


def _media_path(path: str, root: Path | None) -> str:
    """A Camtrap DP ``filePath``: the census path when it is relative and plain (no leading '.', '/', '~' and no
    '..'), else a ``file:`` URL of the resolved file."""
    p = str(path).replace("\\", "/")
    if re.match(r"^[^./~]", p) and ".." not in p and not Path(p).is_absolute():
        return p
    full = Path(path) if Path(path).is_absolute() or root is None else root / path
    return full.resolve().as_uri()


def _deployments(cameras: pd.DataFrame, t: pd.DataFrame, when: pd.Series, offset: str, session: str,
                 source: str) -> pd.DataFrame:
    import pandas as pd

    lat, lon = _latlon(cameras, source)
    dated = {"start", "end"} <= set(cameras.columns)
    first, last = when.min(), when.max()
    rows = []
    for i, r in enumerate(cameras.to_dict("records")):
        cam = str(r["camera"])
        comment = ""
        if dated:
            iv = _intervals(pd.DataFrame([r]), source=source)[cam]
            start, end = iv[0][0], iv[0][1] - timedelta(seconds=1)
        else:
            mine = when[t["camera"].astype(str) == cam]
            start, end = (mine.min(), mine.max()) if len(mine) else (first, last)
            comment = "start and end not recorded: the span of this census's detections"
        if pd.isna(start) or pd.isna(end):
            raise ExportError(f"{source}, camera {cam!r}: no start/end and no dated detection for the "
                              "camtrapdp deployment")
        rows.append({"deploymentID": cam, "locationID": str(r.get("station") or cam), "locationName": cam,
                     "latitude": float(lat.iat[i]), "longitude": float(lon.iat[i]),
                     "deploymentStart": _iso(start, offset), "deploymentEnd": _iso(end, offset),
                     "habitat": str(r.get("habitat") or ""), "deploymentGroups": f"session:{session}",
                     "deploymentComments": comment})
    return pd.DataFrame(rows, columns=DP_FIELDS["deployments"])


def _observations(t: pd.DataFrame, when: pd.Series, sizes: Mapping[str, tuple[int, int] | None], *, offset: str,
                  species: str, classified_by: str, now: str, sex: Mapping[str, str]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r, w in zip(t.to_dict("records"), when):
        box = json.loads(r["bbox"]) if str(r.get("bbox") or "").startswith("[") else None
        size = sizes.get(str(r["path"]))
        rel = [box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1]] if box and size else None
        score = pd.to_numeric(r.get("score"), errors="coerce")
        known = r["decision"] in ("known", "uncertain") and not pd.isna(score) and 0 <= float(score) <= 1
        rows.append({
            "observationID": _stable_id("o", r["path"], r.get("bbox")), "deploymentID": str(r["camera"]),
            "mediaID": _stable_id("m", r["path"]), "eventID": r.get("burst") or "",
            "eventStart": _iso(w, offset), "eventEnd": _iso(w, offset), "observationLevel": "media",
            "observationType": "animal", "scientificName": species, "count": 1,
            "sex": {"F": "female", "M": "male"}.get(sex.get(str(r["identity"]), ""), ""),
            "individualID": str(r["identity"]),
            "bboxX": round(rel[0], 6) if rel else "", "bboxY": round(rel[1], 6) if rel else "",
            "bboxWidth": round(rel[2], 6) if rel else "", "bboxHeight": round(rel[3], 6) if rel else "",
            "classificationMethod": "machine", "classifiedBy": classified_by, "classificationTimestamp": now,
            "classificationProbability": round(float(score), 4) if known else "",
            "observationTags": f"decision:{r['decision']}",
            "observationComments": "" if r["decision"] != "new" else "a new individual: no known identity reached "
                                   "the threshold (provisional id until reviewed)",
        })
    return pd.DataFrame(rows, columns=DP_FIELDS["observations"])


def _package(deps: pd.DataFrame, *, session: str, species: str, now: str) -> dict[str, Any]:
    from .. import __version__

    lat, lon = deps["latitude"], deps["longitude"]
    box = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    ring = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]], [box[0], box[1]]]
    spatial = ({"type": "Point", "coordinates": box[:2]} if box[0] == box[2] and box[1] == box[3]
               else {"type": "Polygon", "bbox": box, "coordinates": [ring]})
    res = [{"name": n, "path": f"{n}.csv", "profile": "tabular-data-resource", "format": "csv",
            "mediatype": "text/csv", "encoding": "utf-8", "schema": f"{_DP_BASE}/{n}-table-schema.json"}
           for n in ("deployments", "media", "observations")]
    return {
        "resources": res, "profile": f"{_DP_BASE}/camtrap-dp-profile.json",
        "name": f"leopard-reid-census-{_safe_id(session).lower()}", "id": _stable_id("", "census", session),
        "created": now, "title": f"Leopard census, session {session}",
        "description": "Individual identifications of camera-trap detections by leopard-reid: machine "
                       "classifications (classificationProbability = calibrated P(same individual)); NEW- ids are "
                       "provisional until reviewed. Timestamps carry the offset given to the export.",
        "contributors": [{"title": "leopard-reid " + __version__ + " (software); add the project's people",
                          "role": "contributor"}],
        "sources": [{"title": "leopard-reid", "version": __version__}],
        "project": {"title": f"Leopard census, session {session}", "samplingDesign": "targeted",
                    "captureMethod": ["activityDetection"], "individualAnimals": True, "observationLevel": ["media"]},
        "spatial": spatial,
        "temporal": {"start": deps["deploymentStart"].min()[:10], "end": deps["deploymentEnd"].max()[:10]},
        "taxonomic": [{"scientificName": species, "taxonRank": "species"}],
    }


def write_camtrapdp(
    table: pd.DataFrame,
    out: str | os.PathLike,
    cameras: pd.DataFrame,
    *,
    session: str = "1",
    root: str | os.PathLike | None = None,
    covariates: pd.DataFrame | None = None,
    utc_offset: str = "+00:00",
    species: str = "Panthera pardus",
    method: str = "fused",
    source: str = "cameras table",
) -> dict[str, Path]:
    """Write a Camtrap DP 1.0 package into ``out``: ``deployments.csv`` (one per camera; needs WGS84
    ``latitude``/``longitude`` in the cameras table), ``media.csv`` (one per image), ``observations.csv`` (one
    media-level ``machine`` observation per dated detection: ``individualID``, ``classificationProbability`` =
    P(same) of known and uncertain calls, bbox relative to the image) and ``datapackage.json``.

    Camera clocks have no time zone: ``utc_offset`` (``+02:00``) is written on every timestamp. Image sizes for
    the relative bbox are read from the image headers under ``root``."""
    import pandas as pd

    from ..census.detections import image_info

    if not re.fullmatch(r"[+-]\d{2}:\d{2}|Z", utc_offset):
        raise ExportError(f"utc offset {utc_offset!r}: use +HH:MM or -HH:MM (or Z)")
    out, base = Path(out), Path(root) if root is not None else None
    dated = table["datetime"].fillna("").astype(str).str.len() > 0
    off = ~table["camera"].astype(str).isin(set(cameras["camera"].astype(str)))
    if (~dated | off).any():  # a Camtrap DP observation needs its timestamp and its deployment
        warnings.warn(f"Camtrap DP: {int((~dated).sum())} detection(s) without a date and {int((dated & off).sum())} "
                      f"at camera(s) missing from {source} left out", stacklevel=2)
    t = table[dated & ~off].reset_index(drop=True)
    when = pd.to_datetime(t["datetime"])
    sizes: dict[str, tuple[int, int] | None] = {}
    for p in dict.fromkeys(t["path"].astype(str)):
        src = Path(p) if Path(p).is_absolute() or base is None else base / p
        try:
            sizes[p] = image_info(src)[0]
        except (OSError, ValueError):
            sizes[p] = None  # the bbox is left empty rather than guessed
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    sex = covariates["sex"].dropna().to_dict() if covariates is not None and "sex" in covariates.columns else {}
    deps = _deployments(cameras, t, when, utc_offset, session, source)
    media = t.assign(_w=when).drop_duplicates("path")
    med = pd.DataFrame({
        "mediaID": [_stable_id("m", p) for p in media["path"]], "deploymentID": media["camera"].astype(str),
        "captureMethod": "activityDetection", "timestamp": [_iso(w, utc_offset) for w in media["_w"]],
        "filePath": [_media_path(p, base) for p in media["path"]], "filePublic": "false",
        "fileName": [Path(str(p)).name for p in media["path"]],
        "fileMediatype": [mimetypes.guess_type(str(p))[0] or "image/jpeg" for p in media["path"]],
    }).reindex(columns=DP_FIELDS["media"])
    from .. import __version__

    obs = _observations(t, when, sizes, offset=utc_offset, species=species, now=now, sex=sex,
                        classified_by=f"leopard-reid {__version__} ({method})")
    files = {"deployments": _write_csv(out / "deployments.csv", deps), "media": _write_csv(out / "media.csv", med),
             "observations": _write_csv(out / "observations.csv", obs)}
    pkg = _package(deps, session=session, species=species, now=now)
    files["datapackage"] = _write_text(out / "datapackage.json", json.dumps(pkg, indent=2) + "\n")
    return files

