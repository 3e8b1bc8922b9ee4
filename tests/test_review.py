"""The census review page: rendering (escaping, self-contained, every detection) and, in a real browser
(Debian's chromium + chromedriver through selenium; skipped when absent), decisions, persistence, filters,
keyboard, decisions.csv out and back in, and apply-review applying exactly what the reviewer did."""

from __future__ import annotations

import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leopard_reid.review import ImageTable, ReviewError, match_points, render_page, review_rows, thumb_uri
from tests.test_census import season  # noqa: F401 - the small real census the page is opened on

COLUMNS = ["path", "bbox", "proposed", "decision", "identity", "side", "camera", "datetime"]
HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'


def _row(i: int, *, decision: str = "known", proposed: str = "L-001", camera: str = "C1", cands=None,
         img: int | None = None) -> dict:
    return {"key": f"p/{i}.jpg|[0,0,10,10]", "path": f"p/{i}.jpg", "bbox": "[0, 0, 10, 10]", "camera": camera,
            "datetime": "2024-01-01T00:00:00", "side": "left", "burst": f"B{i}", "occasion": "1",
            "decision": decision, "proposed": proposed, "score": 0.5, "flank": "",
            "default": "confirm" if decision == "known" else "", "img": img, "first": None,
            "cands": cands if cands is not None else [{"id": "L-001", "p": 0.9, "img": None, "m": None},
                                                      {"id": "L-002", "p": 0.3, "img": None, "m": None}]}


def _blocks(page: str) -> tuple[dict, list]:
    """The page's two JSON blocks, parsed (what review.js reads)."""
    data = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', page, re.S)
    imgs = re.search(r'<script type="application/json" id="review-images">(.*?)</script>', page, re.S)
    return json.loads(data.group(1)), json.loads(imgs.group(1))


class _Refs(HTMLParser):
    """Every URL-valued attribute of the page's tags (script contents are not tags to an HTML parser)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "action", "formaction", "poster", "data",
                                                           "srcset", "background", "xlink:href")]


def _assert_self_contained(page: str) -> None:
    """No attribute, stylesheet or script loads anything from outside the file."""
    parser = _Refs()
    parser.feed(page)
    assert all(r.startswith("data:") for r in parser.refs), [r[:40] for r in parser.refs if not r.startswith("data:")]
    assert re.findall(r"https?://[^\s'\"]*", page) == ["http://www.w3.org/2000/svg"]  # the SVG namespace name
    assert "<link rel=\"stylesheet\"" not in page and "@import" not in page and "<iframe" not in page
    assert not re.search(r"<script[^>]*\bsrc", page) and not re.search(r"url\(\s*['\"]?(?!data:)", page)
    _, images = _blocks(page)
    assert all(u.startswith("data:image/jpeg;base64,") for u, _, _ in images)


# ------------------------------------------------------------------------------------------ rendering
def test_hostile_names_are_text_not_markup():
    rows = [_row(0, proposed=HOSTILE, camera="<b>cam</b>", cands=[{"id": HOSTILE, "p": 0.9, "img": None, "m": None}])]
    rows[0]["path"] = 'a"><script>alert(2)</script>.jpg'
    page = render_page(rows, [], columns=COLUMNS, summary=HOSTILE, notes=[HOSTILE])
    assert HOSTILE not in page and "<script>alert" not in page and "<b>cam" not in page
    assert page.count("<script") == 3  # the two JSON blocks and review.js, nothing injected
    assert "&lt;b&gt;cam&lt;/b&gt;" in page  # the camera filter's option, escaped
    data, _ = _blocks(page)
    assert data["rows"][0]["proposed"] == HOSTILE and data["rows"][0]["path"] == rows[0]["path"]  # intact


def test_page_is_self_contained_and_has_every_detection():
    img = np.zeros((300, 400, 3), np.uint8)
    img[::7] = 255
    table = ImageTable()
    q = table.add("q", img)
    rows = [_row(i, img=q, decision=("known", "new", "uncertain")[i % 3]) for i in range(1200)]  # > the old 1000
    page = render_page(rows, table.items, columns=COLUMNS, camera_map=table.items[0][0])
    _assert_self_contained(page)
    data, images = _blocks(page)
    assert [r["path"] for r in data["rows"]] == [f"p/{i}.jpg" for i in range(1200)]
    assert data["columns"] == COLUMNS and len(images) == 1 and data["page_size"] >= 1


def test_review_rows_order_pictures_and_first_sighting():
    table = pd.DataFrame({
        "path": [f"p{i}.jpg" for i in range(6)], "bbox": ["[0, 0, 5, 5]"] * 6, "camera": ["C1"] * 6,
        "datetime": [f"2024-01-0{i + 1}T00:00:00" for i in range(6)], "side": ["left"] * 6,
        "identity": ["L-1", "NEW-0002", "L-2", "NEW-0001", "NEW-0002", "L-1"],
        "score": [0.99, 0.1, 0.6, 0.2, 0.15, np.nan],
        "decision": ["known", "new", "uncertain", "new", "new", "known"],
        "flank_link": ["", "", "", "", "", ""], "burst": ["B1"] * 6, "occasion": pd.array([1] * 6, dtype="Int64"),
    })
    cand = [[("L-1", 0.99, 0), ("L-2", 0.2, 3)]] * 6
    asked = []
    rows = review_rows(table, cand, query_image=lambda i: asked.append(("q", i)) or i,
                       exemplar_image=lambda j: 100 + j, match=lambda i, kind, j: {"kind": kind, "j": j}, pictured=4)
    assert [r["path"] for r in rows] == ["p2.jpg", "p3.jpg", "p1.jpg", "p4.jpg", "p5.jpg", "p0.jpg"]
    assert [r["decision"] for r in rows] == ["uncertain", "new", "new", "new", "known", "known"]
    assert [r["default"] for r in rows] == ["", "", "", "", "confirm", "confirm"]
    by = {r["path"]: r for r in rows}
    assert by["p4.jpg"]["first"] == {"id": "NEW-0002", "path": "p1.jpg", "img": 1, "m": {"kind": "row", "j": 1}}
    assert by["p1.jpg"]["first"] is None  # the first sighting itself
    assert by["p2.jpg"]["cands"][0]["m"] == {"kind": "exemplar", "j": 0} and by["p2.jpg"]["cands"][1]["m"] is None
    assert by["p5.jpg"]["img"] is None and by["p5.jpg"]["cands"][0]["img"] is None  # beyond `pictured`
    assert by["p5.jpg"]["score"] is None and by["p0.jpg"]["score"] == 0.99
    assert sorted(i for k, i in asked if k == "q") == [1, 1, 2, 3, 4]  # 4 pictured rows + one first sighting


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ReviewError, match="image index 3 not in the 0 images"):
        render_page([_row(0, img=3)], [], columns=COLUMNS)
    with pytest.raises(ReviewError, match="missing cands"):
        render_page([{k: v for k, v in _row(0).items() if k != "cands"}], [], columns=COLUMNS)
    with pytest.raises(ReviewError, match="column"):
        render_page([_row(0)], [], columns=[*COLUMNS, "notes"])
    with pytest.raises(ReviewError, match="image data URI, width, height.*example.org"):
        render_page([_row(0)], [["https://example.org/x.jpg", 1, 1]], columns=COLUMNS)
    with pytest.raises(ReviewError, match=r"\(h, w, 3\)"):
        thumb_uri(np.zeros((10, 10), np.uint8))
    with pytest.raises(ReviewError, match="candidate lists"):
        review_rows(pd.DataFrame({"identity": ["a"]}), [], query_image=len, exemplar_image=len, match=len)
    from leopard_reid.review import write_review

    for bad, reason in (({"pictured": -1}, "pictured must be"), ({"quality": 0}, "quality in"),
                        ({"thumb_height": 4}, "thumb_height must be")):
        with pytest.raises(ReviewError, match=reason):
            write_review("never.html", pd.DataFrame(), pd.DataFrame(), cand=[], local={}, gallery=None,
                         gallery_path=None, bases=[], columns=COLUMNS, **bad)
    assert not Path("never.html").exists()


def test_thumbnails_are_small_and_points_relative():
    from leopard_reid.local import Verification

    rng = np.random.default_rng(0)
    uri, w, h = thumb_uri(rng.integers(0, 255, (900, 1600, 3), dtype=np.uint8))
    assert (w, h) == (228, 128)
    assert uri.startswith("data:image/jpeg;base64,") and len(uri) < 40_000
    assert thumb_uri(np.zeros((50, 60, 3), np.uint8))[1:] == (60, 50)  # never enlarged
    pts = np.array([[0, 0], [400, 200]] * 75, np.float32)
    v = Verification(n_matches=200, n_inliers=150, score=99.44, query_points=pts, candidate_points=pts / 2)
    m = match_points(v, (400, 200), (200, 100), max_lines=60)
    assert m["n"] == 150 and m["s"] == 99.4 and len(m["q"]) == len(m["c"]) == 100  # every 3rd of 150 inliers
    assert m["q"][:6] == [0, 0, 1000, 1000, 0, 0] and m["c"][:6] == [0, 0, 1000, 1000, 0, 0]


def test_census_writes_the_page_with_every_detection_pictured(season):  # noqa: F811
    page = (season["out"] / "review.html").read_text()
    _assert_self_contained(page)
    data, images = _blocks(page)
    rows = data["rows"]
    assert sorted(r["path"] for r in rows) == sorted(season["season"]["path"])
    assert all(r["img"] is not None for r in rows)  # every crop pictured
    rank = {"uncertain": 0, "new": 1, "known": 2}
    assert [rank[r["decision"]] for r in rows] == sorted(rank[r["decision"]] for r in rows)
    matched = [r for r in rows if r["cands"] and r["cands"][0]["m"]]
    assert len(matched) >= len(rows) // 2 and all(m["cands"][0]["m"]["n"] >= 0 for m in matched)
    assert all(c["img"] is not None for r in rows for c in r["cands"])  # exemplars found beside the gallery
    assert len(page.encode()) / len(rows) < 25_000
    assert len(images) < 2 * len(rows)  # exemplars stored once


def test_pictures_decode_each_exemplar_once_and_hold_few_crops(season, monkeypatch):  # noqa: F811
    from leopard_reid import Gallery
    from leopard_reid.io import parse_bbox
    from leopard_reid.review import data

    m = pd.read_csv(season["out"] / "matches.csv", dtype=str, keep_default_na=False)
    m["score"] = m["score"].astype(float)
    meta = pd.DataFrame({"source": [str(season["root"] / p) for p in m["path"]],
                         "bbox": [parse_bbox(b) for b in m["bbox"]]})
    gallery = Gallery.load(season["gallery"])
    loads: list[str] = []
    real = data._load
    monkeypatch.setattr(data, "_load", lambda source, bbox: loads.append(str(source)) or real(source, bbox))
    pics = data.Pictures(meta, local={}, gallery=gallery, gallery_path=season["gallery"], bases=[season["root"]],
                         images=ImageTable(), keep=2)
    held = []
    crop = pics.crop
    pics.crop = lambda i: (held.append(len(pics._crops)), crop(i))[1]
    cand = [[(c.split(":")[0], float(c.split(":")[1]), int(np.flatnonzero(gallery.labels == c.split(":")[0])[0]))
             for c in text.split(";")] for text in m["candidates"]]
    rows = review_rows(m, cand, query_image=pics.query_image, exemplar_image=pics.exemplar_image, match=pics.match)
    exemplars = {c["img"] for r in rows for c in r["cands"]}
    gallery_files = {str(season["root"] / p) for p in gallery.metadata["path"]}
    assert len([x for x in loads if x in gallery_files]) == len(exemplars)  # each exemplar decoded once
    assert max(held) <= 2 and len(pics._crops) <= 2 and len(pics._feats) <= 2
    assert all(r["img"] is not None and r["cands"][0]["m"] is not None for r in rows)


# ------------------------------------------------------------------------------------------ browser
def _chrome(download_dir: Path):
    pytest.importorskip("selenium")
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
              f"--user-data-dir={download_dir.parent / 'profile'}", "--window-size=1400,900"):
        opts.add_argument(a)
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


@pytest.fixture()
def browser(tmp_path):
    (tmp_path / "downloads").mkdir()
    driver = _chrome(tmp_path / "downloads")
    yield driver
    driver.quit()


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _row_el(driver, path: str):
    from selenium.webdriver.common.by import By

    return [e for e in driver.find_elements(By.CSS_SELECTOR, "#rows .det") if e.get_attribute("data-path") == path][0]


def _click(el, css: str) -> None:
    from selenium.webdriver.common.by import By

    el.find_element(By.CSS_SELECTOR, css).click()


def test_browser_review_reload_export_apply(season, browser, tmp_path):  # noqa: F811
    from leopard_reid import Gallery
    from leopard_reid.census import apply_review

    page = season["out"] / "review.html"
    browser.get(page.as_uri())
    rows = json.loads(browser.execute_script("return document.getElementById('review-data').textContent"))["rows"]
    assert browser.execute_script("return document.querySelectorAll('#rows .det').length") == len(rows)
    assert browser.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('data:'))")
    assert browser.execute_script(  # what the script drew: every src and href (SVG images too) is a data URI
        "return [...document.querySelectorAll('[src], [href]')].every(e => "
        "(e.getAttribute('src') || e.getAttribute('href')).startsWith('data:'))")
    assert browser.execute_script("return document.querySelectorAll('#rows svg line').length") > 0
    two = next(r for r in rows if len(r["cands"]) >= 2 and r["cands"][1]["id"] != r["proposed"])
    known = [r for r in rows if r["decision"] == "known" and r is not two]
    assert len(known) >= 2, "the season needs two known detections"
    to_new, to_reject = known[0], known[1]
    other_id = two["cands"][1]["id"]
    _click(_row_el(browser, two["path"]), f".cand[data-id='{other_id}']")   # pick another candidate
    _click(_row_el(browser, to_new["path"]), "button.act-new")             # a new individual
    _click(_row_el(browser, to_reject["path"]), "button.act-unusable")     # not a leopard / unusable
    expect = {two["path"]: ("change", other_id), to_reject["path"]: ("reject", "")}
    new_name = _row_el(browser, to_new["path"]).get_attribute("data-identity")
    assert re.fullmatch(r"NEW-\d{4}", new_name) and new_name not in {r["proposed"] for r in rows}
    expect[to_new["path"]] = ("change", new_name)

    browser.refresh()  # decisions survive a reload
    for path, (dec, ident) in expect.items():
        el = _row_el(browser, path)
        assert (el.get_attribute("data-decision"), el.get_attribute("data-identity")) == (dec, ident)
    assert len(browser.execute_script("return leopardReview.decisions()")) == 3

    browser.find_element("id", "download").click()  # the button saves what leopardReview.csv() returns
    saved = tmp_path / "downloads" / "decisions.csv"
    for _ in range(100):
        if saved.exists() and saved.stat().st_size:
            break
        time.sleep(0.1)
    text = browser.execute_script("return leopardReview.csv()")
    assert saved.read_text() == text
    assert _errors(browser) == []

    exported = pd.read_csv(saved, dtype=str, keep_default_na=False)
    assert list(exported.columns) == ["path", "bbox", "proposed", "decision", "identity", "side", "camera", "datetime"]
    template = pd.read_csv(season["out"] / "decisions.csv", dtype=str, keep_default_na=False).set_index("path")
    got = exported.set_index("path")
    assert sorted(got.index) == sorted(template.index)
    changed = [p for p in got.index if tuple(got.loc[p, ["decision", "identity"]]) !=
               tuple(template.loc[p, ["decision", "identity"]])]
    assert sorted(changed) == sorted(expect)  # exactly the reviewer's three changes

    gpath = tmp_path / "g.lrg"
    shutil.copyfile(season["gallery"], gpath)
    before = Gallery.load(gpath).metadata
    summary = apply_review(saved, gallery=gpath, root=season["root"])
    after = Gallery.load(gpath).metadata.iloc[len(before):]
    added = dict(zip(after["path"], after["identity"]))
    want = {p: (r["identity"] or r["proposed"]) for p, r in got.iterrows() if r["decision"] in ("confirm", "change")}
    assert added == want and summary["added"] == len(want)
    assert added[two["path"]] == other_id and added[to_new["path"]] == new_name
    assert to_reject["path"] not in added and summary["new_individuals"] == [new_name]


def _synthetic_page(path: Path, n: int, *, seed: int, proposed: str = "L-001") -> list[dict]:
    rng = np.random.default_rng(seed)
    table = ImageTable()
    ex = [table.add(k, rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)) for k in range(2)]
    m = {"n": 3, "s": 2.5, "q": [100, 100, 500, 500, 900, 900], "c": [0, 0, 500, 500, 1000, 1000]}
    rows = [_row(i, decision=("uncertain", "new", "known")[i % 3], camera=f"C{i % 4}",
                 proposed=proposed if i % 3 != 1 else f"NEW-{i:04d}", img=table.add(("q", i), rng.integers(
                     0, 255, (80, 120, 3), dtype=np.uint8)),
                 cands=[{"id": "L-001", "p": 0.9, "img": ex[0], "m": m},
                        {"id": HOSTILE, "p": 0.4, "img": ex[1], "m": None}])
            for i in range(n)]
    path.write_text(render_page(rows, table.items, columns=COLUMNS, summary=HOSTILE, next_new=500), encoding="utf-8")
    return rows


def test_browser_keyboard_filters_pages_and_loading_a_csv(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    rows = _synthetic_page(tmp_path / "a.html", 120, seed=1)
    browser.get((tmp_path / "a.html").as_uri())
    js = browser.execute_script
    assert js("return document.querySelectorAll('#rows .det').length") == 50  # one page of 50 ...
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # ... and every row reachable
    last = js("return [...document.querySelectorAll('#rows .det')].map(e => e.dataset.path)")
    assert last == [r["path"] for r in rows[100:]]
    assert HOSTILE in browser.find_element(By.ID, "summary").text  # shown as text (an alert would fail the test)
    assert js("return document.querySelectorAll('img[src=x], #rows script').length") == 0
    assert js("return [...document.querySelectorAll('.cand b')].some(b => b.textContent === arguments[0])", HOSTILE)
    body.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    # keys act on the highlighted row and move on: accept row 0; "new" on row 1 (proposed NEW-0001) confirms
    # it; skip row 2; unusable row 3; candidate 2 for row 4
    body.send_keys("a", "n", "j", "u", "2")
    state = js("return leopardReview.decisions()")
    assert state == {"p/0.jpg|[0,0,10,10]": {"decision": "confirm", "identity": "L-001"},
                     "p/1.jpg|[0,0,10,10]": {"decision": "confirm", "identity": "NEW-0001"},
                     "p/3.jpg|[0,0,10,10]": {"decision": "reject", "identity": ""},
                     "p/4.jpg|[0,0,10,10]": {"decision": "change", "identity": HOSTILE}}
    assert js("return document.querySelector('.det.current').dataset.path") == "p/5.jpg"
    # "new" on a known row (proposed L-001): a fresh name, numbered from the page's next_new
    _click(_row_el(browser, "p/5.jpg"), "button.act-new")
    assert js("return leopardReview.decisions()['p/5.jpg|[0,0,10,10]'].identity") == "NEW-0500"
    # filters
    Select(browser.find_element(By.ID, "f-decision")).select_by_value("known")
    paths = js("return [...document.querySelectorAll('#rows .det')].map(e => e.dataset.path)")
    assert paths == [r["path"] for r in rows if r["decision"] == "known"][:50]
    Select(browser.find_element(By.ID, "f-camera")).select_by_value("C1")
    paths = js("return [...document.querySelectorAll('#rows .det')].map(e => e.dataset.path)")
    assert paths == [r["path"] for r in rows if r["decision"] == "known" and r["camera"] == "C1"]
    Select(browser.find_element(By.ID, "f-decision")).select_by_value("reviewed")
    Select(browser.find_element(By.ID, "f-camera")).select_by_value("")
    assert js("return [...document.querySelectorAll('#rows .det')].map(e => e.dataset.path)") == [
        "p/0.jpg", "p/1.jpg", "p/3.jpg", "p/4.jpg", "p/5.jpg"]
    Select(browser.find_element(By.ID, "f-decision")).select_by_value("")
    browser.find_element(By.ID, "f-identity").send_keys("NEW-0500")
    assert js("return [...document.querySelectorAll('#rows .det')].map(e => e.dataset.path)") == ["p/5.jpg"]

    # another census (other run id) in the same browser does not see these decisions
    _synthetic_page(tmp_path / "b.html", 10, seed=2, proposed="L-009")
    browser.get((tmp_path / "b.html").as_uri())
    assert js("return leopardReview.decisions()") == {}
    # a decisions.csv saved from the first page, loaded into a fresh copy of it (a new day, a cleared browser)
    browser.get((tmp_path / "a.html").as_uri())
    csv_text = js("return leopardReview.csv()")
    js("localStorage.clear()")
    browser.refresh()
    assert js("return leopardReview.decisions()") == {}
    (tmp_path / "bad.csv").write_text("path,bbox,decision,identity\np/0.jpg,\"[0, 0, 10, 10]\",maybe,L-001\n")
    browser.find_element(By.ID, "load-csv").send_keys(str(tmp_path / "bad.csv"))
    msg = browser.find_element(By.ID, "message")
    for _ in range(50):
        if msg.text:
            break
        time.sleep(0.1)
    assert 'line 2: decision "maybe"' in msg.text and "nothing loaded" in msg.text
    assert js("return leopardReview.decisions()") == {}
    (tmp_path / "decisions.csv").write_text(csv_text)
    browser.find_element(By.ID, "load-csv").send_keys(str(tmp_path / "decisions.csv"))
    for _ in range(50):
        if "Loaded" in msg.text:
            break
        time.sleep(0.1)
    assert "Loaded 120 decision(s)" in msg.text
    assert js("return leopardReview.csv()") == csv_text and len(js("return leopardReview.decisions()")) == 5
    browser.refresh()
    assert js("return leopardReview.csv()") == csv_text  # and they are kept again
    assert _errors(browser) == []
