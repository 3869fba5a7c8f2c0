"""`clgraft site`: the static leaderboard site, built from a handful of the committed run records (and once from all
of results/, as CI builds it), checked as files and, where Chromium is installed, in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clgraft.errors import ClgraftError
from clgraft.methods import METHODS
from clgraft.results.leaderboard import MEMORY_UNKNOWN, load_records, summarize
from clgraft.site.build import MANIFEST, build_site, serve
from clgraft.site.data import docs_dir, method_docs, metric_cell, paired_cell

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
# two seeds of naive, emr, joint and both graft-compose rows (task-aware: forgetting 0 by construction), one seed of
# independent (cells without an interval), and a second stream, with the standard sweep's manifest ("k of n cells")
PICKED = [
    *(f"lmbff-mixed-forward-{m}-s{s}-*" for m in ("naive", "emr", "joint", "graft-compose") for s in (13, 21)),
    "lmbff-mixed-forward-independent-s13-*",
    "mbpa-fewshot-i-naive-s13-*",
    "mbpa-fewshot-i-replay-s13-*",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder holding copies of a few committed run records (with their predictions) and the manifest."""
    root = tmp_path_factory.mktemp("results")
    for pattern in PICKED:
        for run in sorted((RESULTS / "runs").glob(pattern)):
            shutil.copytree(run, root / "runs" / run.name)
    shutil.copytree(RESULTS / "sweeps", root / "sweeps")
    return root


@pytest.fixture(scope="module")
def site(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(results, out)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_records_give_the_same_bytes(results, site, tmp_path):
    build_site(results, tmp_path / "again")
    assert _files(tmp_path / "again") == _files(site)


def test_every_row_of_the_leaderboard_has_a_page_and_the_index_prints_its_cells(results, site):
    table = summarize(load_records(results), sort_by="acc")
    index = (site / "index.html").read_text(encoding="utf-8")
    for row in table.to_dict(orient="records"):
        assert (site / "rows" / f"{row['id']}.html").is_file()
        page = (site / "rows" / f"{row['id']}.html").read_text(encoding="utf-8")
        for column in ("acc", "forgetting", "acc_vs_naive"):
            main, _, rest = row[column].partition(" ")
            assert main in page and rest in page, (row["id"], column, row[column])
        assert f'data-id="{row["id"]}"' in index
    sections = table.groupby(["stream", "order"], sort=False)["id"]
    expected = [row_id for _, ids in sections for row_id in ids]  # the frame's order (by ACC), stream by stream
    assert re.findall(r'<tr data-id="([0-9a-f]{8})"', index) == expected


def test_a_value_fixed_by_construction_from_one_seed_or_of_transfer_is_shown_as_what_it_is(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    assert (
        '<td class="num by-construction" data-value="0"><span class="main">0</span><span class="sub">(by construction)'
        in index
    )
    assert '<span class="sub">1 seed, no interval</span>' in index  # independent has one seed here
    independent = index[index.index(">independent</a>") :].split("</tr>")[0]
    assert independent.count("R rows are transfer (each task from θ₀), not forgetting") == 3  # BWT, forgetting, Δ


def test_cells_parse_back_to_the_numbers_the_leaderboard_printed():
    cell = metric_cell("61.86 ± 1.62 [59.84, 63.87]")
    assert (cell.kind, cell.value, cell.std, cell.low, cell.high) == ("interval", 61.86, 1.62, 59.84, 63.87)
    assert metric_cell("-0.63").kind == "one-seed" and metric_cell("-0.63").value == -0.63
    assert metric_cell("0 (by construction)").kind == "by-construction"
    assert metric_cell("n/a").value is None
    paired = paired_cell("+2.71 [-1.94, +7.36] p=0.181 (n=5)")
    assert (paired.kind, paired.value, paired.low, paired.high, paired.p) == ("interval", 2.71, -1.94, 7.36, 0.181)
    assert paired_cell("-7.79 [-15.51, -0.08] (n=2)").p is None
    assert paired_cell("+5.61 [+3.69, +7.54] p<0.001 (n=5)").p == 0.001  # the bound the table prints
    assert paired_cell("+2.71 (1 seed)").kind == "one-seed"
    assert paired_cell("-0.50 [-1.00, +0.00] p=0.100 (n=3) (by construction)").kind == "by-construction"
    assert paired_cell("-").kind == "missing"


def test_every_method_has_its_family_and_departures_in_docs_methods_md():
    docs = method_docs((docs_dir() / "methods.md").read_text(encoding="utf-8"))
    assert set(METHODS) <= set(docs)
    assert docs["naive"].family == "Classic continual learning"
    assert docs["graft-compose"].family == "Grafting"
    assert "BWT and forgetting are 0 by construction" in docs["graft-compose"].departures


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[a] for a in ("href", "src") if attrs.get(a)]
        if attrs.get("id"):
            self.ids.add(attrs["id"])


def test_every_link_lands_in_the_folder_and_nothing_is_fetched_from_elsewhere(site):
    pages = {p: _Links() for p in site.rglob("*.html")}
    for page, parser in pages.items():
        parser.feed(page.read_text(encoding="utf-8"))
    for page, parser in pages.items():
        for url in parser.urls:
            assert not re.match(r"[a-z]+:", url) or url.startswith("data:"), f"{page.name} points off the site: {url}"
            if url.startswith(("data:", "#")):
                continue
            path, _, anchor = url.partition("#")
            target = (page.parent / path).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: broken link {url}"
            if anchor and target.suffix == ".html":
                assert anchor in pages[target].ids, f"{page.relative_to(site)}: no anchor {url}"


def test_a_rebuild_removes_what_the_last_build_wrote_and_never_a_strangers_file(results, tmp_path):
    out = tmp_path / "site"
    build_site(results, out)
    stale = out / "rows" / "00000000.html"
    stale.write_text("a row that left the leaderboard")
    (out / MANIFEST).write_text((out / MANIFEST).read_text() + "rows/00000000.html\n")
    gone = out / "runs" / "a-run-that-left"
    gone.mkdir()
    (gone / "run.json").write_text("{}")
    (out / MANIFEST).write_text((out / MANIFEST).read_text() + "runs/a-run-that-left/run.json\n../outside.txt\n")
    (tmp_path / "outside.txt").write_text("not the site's")
    build_site(results, out)
    assert not stale.exists() and not gone.exists() and (out / "index.html").is_file()
    assert (tmp_path / "outside.txt").is_file()  # a manifest never reaches outside its folder
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ClgraftError, match="did not write"):
        build_site(results, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_the_site_command_builds_and_serve_answers_on_localhost(results, tmp_path, invoke):
    out = tmp_path / "site"
    assert "written:" in invoke("site", "--results", results, "--out", out)
    said: list[str] = []
    threading.Thread(target=serve, args=(out, 0, said.append), daemon=True).start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    url = re.search(r"http://127\.0\.0\.1:\d+/", said[0]).group(0)
    with urllib.request.urlopen(url + "index.html") as response:  # noqa: S310 (localhost)
        assert response.read() == (out / "index.html").read_bytes()


def test_the_committed_results_build_in_under_a_minute(tmp_path):
    """CI builds the site from results/ (it is not committed; docs/site.md says why): every row gets its page."""
    start = time.monotonic()
    build_site(RESULTS, tmp_path / "site")
    assert time.monotonic() - start < 60
    rows = summarize(load_records(RESULTS))
    assert {p.stem for p in (tmp_path / "site" / "rows").glob("*.html")} == set(rows["id"])


# --- in a real browser: headless Chromium driven by Selenium ---------------------------------------------------


def _chromium() -> tuple[str, str]:
    """Paths of Chromium and its driver, or a skip that says what to install."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver") if Path(p).is_file()), None
    )
    if browser is None or driver is None:
        pytest.skip("no Chromium or chromedriver on this machine (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _chromium()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


def _open(browser, page: Path) -> None:
    """Load a page and wait until every figure on it is drawn; clears the logs of earlier pages first."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser"), browser.get_log("performance")
    browser.get(page.as_uri())
    charts = page.read_text(encoding="utf-8").count("data-chart>")
    WebDriverWait(browser, 60).until(
        lambda b: b.execute_script("return document.querySelectorAll('.vega-embed svg.marks').length") >= charts
    )


def _requests(browser) -> list[str]:
    events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


@pytest.mark.parametrize("page", ["index.html", "frontier.html", "claims.html", "docs/protocols.html"])
def test_pages_load_with_no_console_message_and_no_request_leaving_the_machine(browser, site, page):
    _open(browser, site / page)
    messages = [m for m in browser.get_log("browser") if m["level"] in ("SEVERE", "WARNING")]
    assert messages == []
    requests = _requests(browser)
    assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests


def test_a_row_page_loads_clean_with_its_figures(browser, site):
    row = next((site / "rows").glob("*.html"))
    _open(browser, row)
    assert [m for m in browser.get_log("browser") if m["level"] in ("SEVERE", "WARNING")] == []
    assert all(url.startswith(("file://", "data:")) for url in _requests(browser))
    assert browser.execute_script("return document.querySelectorAll('.vega-embed svg.marks').length") >= 3


def _column(browser, table, key: str) -> list[float | None]:
    from selenium.webdriver.common.by import By

    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    index = next(i for i, h in enumerate(headers) if h.get_attribute("data-key") == key)
    values = [
        r.find_elements(By.XPATH, "./*")[index].get_attribute("data-value")
        for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    return [float(v) if v else None for v in values]


def test_sorting_by_acc_puts_the_rows_in_order_by_mouse_and_by_keyboard(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(browser, site / "index.html")
    table = browser.find_element(By.CSS_SELECTOR, "table.sortable")
    header = table.find_element(By.CSS_SELECTOR, 'th[data-key="acc"]')
    assert header.get_attribute("aria-sort") == "descending"  # as built: the frame's order
    header.find_element(By.TAG_NAME, "button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = _column(browser, table, "acc")
    assert values == sorted(values)
    header.find_element(By.TAG_NAME, "button").send_keys(Keys.ENTER)
    assert header.get_attribute("aria-sort") == "descending"
    values = _column(browser, table, "acc")
    assert values == sorted(values, reverse=True)
    forgetting = table.find_element(By.CSS_SELECTOR, 'th[data-key="forgetting"] button')
    forgetting.click()  # n/a (joint) goes last whichever way
    assert _column(browser, table, "forgetting")[-1] is None


def test_filters_hide_the_rows_that_do_not_match(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, site / "index.html")
    Select(browser.find_element(By.ID, "filter-data")).select_by_value("none")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.sortable tbody tr")
    shown = [r for r in rows if r.is_displayed()]
    assert 0 < len(shown) < len(rows)
    assert all(r.get_attribute("data-data") == "none" for r in shown)
    assert browser.find_element(By.ID, "filter-count").text == f"{len(shown)} of {len(rows)} rows"


def _beaten(i: str, points: dict[str, tuple[float, float]]) -> bool:
    """Whether another row keeps no more memory and scores no less ACC than row i, and one of the two strictly."""
    kb, acc = points[i]
    return any(k <= kb and a >= acc and (k < kb or a > acc) for j, (k, a) in points.items() if j != i)


def test_the_frontier_numbers_the_rows_no_row_beats_and_names_them_under_each_figure(browser, site, results):
    from selenium.webdriver.common.by import By

    frame = summarize(load_records(results)).reset_index()
    _open(browser, site / "frontier.html")
    sections = browser.find_elements(By.CSS_SELECTOR, "main section")
    assert sections
    for section in sections:
        key = section.find_elements(By.CSS_SELECTOR, "ol.front-key li")
        numbers = [t.text for t in section.find_elements(By.CSS_SELECTOR, ".vega-embed svg g.mark-text.role-mark text")]
        assert sorted(int(n) for n in numbers if n.isdigit()) == list(range(1, len(key) + 1))
        assert [int(li.get_attribute("value")) for li in key] == list(range(1, len(key) + 1))
        named = [li.find_element(By.TAG_NAME, "a").get_attribute("href").rsplit("/", 1)[1][:-5] for li in key]
        assert all((site / "rows" / f"{row_id}.html").is_file() for row_id in named)
        stream, order = section.find_element(By.TAG_NAME, "h2").text.replace(", order", "").split()
        part = frame[(frame["stream"] == stream) & (frame["order"] == order) & (frame["method"] != "joint")]
        points = {
            r.id: (float(r.extra_kb_per_task), float(r.acc.split()[0]))
            for r in part.itertuples()
            if r.extra_kb_per_task != MEMORY_UNKNOWN  # the rows the page says it cannot place
        }
        assert sorted(named) == sorted(i for i in points if not _beaten(i, points))
        assert [points[i][0] for i in named] == sorted(points[i][0] for i in named)  # numbered by memory


def test_a_row_link_opens_its_page_and_its_bibtex_is_clgraft_cites(browser, site, results, invoke):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, site / "index.html")
    first = browser.find_element(By.CSS_SELECTOR, "table.sortable tbody tr")
    row_id = first.get_attribute("data-id")
    first.find_element(By.CSS_SELECTOR, "a.rowid").click()
    WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith(f"rows/{row_id}.html"))
    assert row_id in browser.find_element(By.CSS_SELECTOR, "p.ids").text
    shown = browser.find_element(By.ID, "bibtex").get_attribute("textContent")
    assert shown.strip() == invoke("cite", row_id, "--results", results).strip()
    browser.find_element(By.CSS_SELECTOR, "button[data-copy]").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.CSS_SELECTOR, ".copied").text)


@pytest.mark.parametrize(
    ("verdict", "badge"),
    [
        ("not tested in the paper's setting (holds in this one: the whole 95% CI is > 0)", "v-reproduced"),
        ("not tested in the paper's setting (no effect larger than 0.3 in this one: …)", "v-not-reproduced"),
        ("not tested in the paper's setting (inconclusive in this one: …)", "v-inconclusive"),
        ("clgraft finding: fails in this setting (…)", "v-not-reproduced"),
        ("reproduced (…)", "v-reproduced"),
        ("not reproduced (…)", "v-not-reproduced"),
        ("needs GPU/network", "v-needs"),
    ],
)
def test_a_claims_badge_says_what_its_interval_showed(verdict, badge):
    from clgraft.site.build import _verdict_class

    assert _verdict_class(verdict) == badge
