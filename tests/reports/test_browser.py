"""The reports in a real headless browser: Debian's ``chromium`` driven by selenium through
Debian's ``chromium-driver`` (nothing is downloaded: both binaries are given explicitly).

For each page: every image loads, the console stays empty (no error, no CSP violation, no
failed fetch), no script exists, nothing but local files is requested, each section is present
and visible, and a full-page screenshot is not blank. The screenshots are kept under pytest's
temporary folder (and copied to ``$BIDS_REGIONX_SCREENSHOT_DIR`` when set).

Needs the ``selenium`` package (test extra) and ``apt-get install chromium chromium-driver``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

#: Headless Chromium that stays offline and leaves nothing behind.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
    "--window-size=1280,900",
)
PARTICIPANT_SECTIONS = ("summary", "regions", "atlas-Synthetic", "runs", "combined", "methods",
                        "about")


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A selenium-driven headless Chromium with its console log enabled."""
    webdriver = pytest.importorskip(
        "selenium.webdriver",
        reason="selenium is not installed (it is in the 'test' extra: pip install -e '.[test]')",
    )
    from selenium.webdriver.chrome.service import Service

    chromium = _binary("chromium", "chromium-browser")
    driver = _binary("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path_factory.mktemp("browser"))
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # selenium-manager must never fetch a driver
        session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


def open_page(browser, path: Path) -> dict:
    """Load ``path`` and report what the page did."""
    browser.get(path.resolve().as_uri())
    state = browser.execute_script("""
        return {
            title: document.title,
            ready: document.readyState,
            scripts: document.scripts.length,
            images: Array.from(document.images).map(i => ({
                src: i.getAttribute('src').slice(0, 120),
                loaded: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0,
            })),
            requests: performance.getEntriesByType('resource').map(e => e.name),
            pwned: typeof window.__pwned !== 'undefined',
            text: document.body.innerText.length,
        };
    """)
    state["console"] = browser.get_log("browser")
    return state


def assert_clean(state: dict, *, min_images: int) -> None:
    assert state["ready"] == "complete"
    assert state["console"] == [], state["console"]
    assert state["scripts"] == 0 and not state["pwned"]
    broken = [img["src"] for img in state["images"] if not img["loaded"]]
    assert broken == [], broken
    assert len(state["images"]) >= min_images
    assert all(url.startswith("file://") for url in state["requests"]), state["requests"]
    assert state["text"] > 200


def screenshot(browser, name: str, folder: Path) -> Path:
    """A full-page screenshot; fails if it is blank (one colour, or almost all white)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height), 12000))
    path = folder / f"{name}.png"
    assert browser.save_screenshot(str(path))
    browser.set_window_size(1280, 900)
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 800
    colours = np.unique(pixels.reshape(-1, 3)[:: 97], axis=0)
    assert len(colours) > 50, "the page looks blank"
    assert (pixels.min(axis=2) < 200).mean() > 0.03, "the page is (almost) all white"
    keep = os.environ.get("BIDS_REGIONX_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(keep) / path.name)
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def test_participant_report(browser, participant_run, shots):
    path = participant_run.out / "sub-02.html"
    state = open_page(browser, path)
    assert state["title"] == "sub-02: bids_regionx report"
    # overview + 3 maps; per run: FD, carpet, coverage, 3 connectomes; combined: carpet + 3
    assert_clean(state, min_images=4 + 2 * 6 + 4)
    for section in (*PARTICIPANT_SECTIONS, "run-sub-02_task-rest_run-1",
                    "run-sub-02_task-rest_run-2"):
        element = browser.find_element("id", section)
        assert element.is_displayed() and element.size["height"] > 20, section
    # the navigation works without script
    browser.find_element("css selector", 'header a[href="#methods"]').click()
    assert browser.execute_script("return location.hash") == "#methods"
    print(f"\nscreenshot: {screenshot(browser, 'sub-02', shots)}")


def test_report_with_hostile_strings(browser, poisoned, shots):
    state = open_page(browser, poisoned)
    assert_clean(state, min_images=10)  # nothing ran, nothing was blocked, nothing fetched
    text = browser.find_element("id", "regions").text
    assert "<script>window.__pwned=1</script>" in text
    screenshot(browser, "sub-01-hostile", shots)


def test_citation_page(browser, participant_run):
    state = open_page(browser, participant_run.out / "logs" / "CITATION.html")
    assert_clean(state, min_images=0)
    assert len(browser.find_elements("css selector", "ul.references li")) > 10


def test_estimator_report(browser, small_maps_img, tmp_path, shots):
    from bids_regionx import RegionExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = RegionExtractor(small_maps_img, min_region_size=10,
                              extractor="connected_components").fit()
        report = est.generate_report(displayed_maps=3)
    report.save_as_html(tmp_path / "estimator.html")
    state = open_page(browser, tmp_path / "estimator.html")
    assert_clean(state, min_images=4)
    assert state["title"] == "RegionExtractor report"
    for section in ("warnings", "summary", "figures", "regions", "parameters"):
        assert browser.find_element("id", section).is_displayed(), section
    screenshot(browser, "estimator", shots)
