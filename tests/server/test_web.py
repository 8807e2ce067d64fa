"""The search page in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium), against a real server over a real store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from helpers import EMOJI, make_image, serving

from clipsearch import Library

selenium = pytest.importorskip("selenium", reason="selenium is not installed (the dev extra)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as until  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MODEL = "random:tiny"
# Without the background-networking flags Chromium keeps calling home, and this machine's
# closed network refuses it; a fresh profile per browser, no sandbox as root.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,900",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    for i in range(16):
        make_image(
            root / "photos" / ("home" if i % 2 else "trip") / f"{i:02d}.png",
            seed=i,
            size=(160, 120),
        )
    with Library(root / "store", create=True) as lib:
        lib.index([root / "photos"], model=MODEL)
    with serving(root / "store", precision="fp32") as url:
        yield url, root


def wait(driver, condition, seconds: float = 30):
    return WebDriverWait(driver, seconds).until(condition)


def cards(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#grid figure")


def paths(driver) -> list[str]:
    return [f.find_element(By.TAG_NAME, "img").get_attribute("alt") for f in cards(driver)]


def type_query(driver, text: str) -> None:
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(text, Keys.ENTER)


def results_settle(driver, count: int) -> None:
    wait(driver, lambda d: len(cards(d)) == count)
    loaded = "return [...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)"
    wait(driver, lambda d: d.execute_script(loaded))


def test_a_typed_query_shows_k_thumbnails_with_scores(browser, site, tmp_path):
    url, _ = site
    browser.get(f"{url}/?k=6")
    type_query(browser, "a red square")
    results_settle(browser, 6)
    scores = [float(s.text) for s in browser.find_elements(By.CSS_SELECTOR, "#grid .score")]
    assert len(scores) == 6 and scores == sorted(scores, reverse=True)
    assert "6 results" in browser.find_element(By.ID, "summary").text
    browser.save_screenshot(str(tmp_path / "results.png"))
    if os.environ.get("CLIPSEARCH_SCREENSHOT"):  # the README's picture is made this way
        browser.save_screenshot(os.environ["CLIPSEARCH_SCREENSHOT"])
    browser.find_element(By.ID, "toggle-filters").click()
    browser.find_element(By.ID, "scores").click()
    assert not browser.find_element(By.CSS_SELECTOR, "#grid .score").is_displayed()
    browser.find_element(By.ID, "scores").click()


def test_the_url_holds_the_search_for_reload_and_back(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=5")
    type_query(browser, "a blue circle")
    results_settle(browser, 5)
    first = paths(browser)
    assert parse_qs(urlparse(browser.current_url).query) == {"q": ["a blue circle"], "k": ["5"]}
    browser.refresh()
    results_settle(browser, 5)
    assert paths(browser) == first
    type_query(browser, "a green triangle")
    wait(browser, lambda d: "green" in d.current_url)
    results_settle(browser, 5)
    browser.back()
    wait(browser, lambda d: paths(d) == first)
    assert browser.find_element(By.ID, "query").get_attribute("value") == "a blue circle"


def test_a_dropped_image_searches_by_it(browser, site):
    url, root = site
    browser.get(f"{url}/?k=4")
    picker = browser.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.id = 'picker';"
        "document.body.append(i); return i;"
    )
    dropped = root / "photos" / "trip" / "04.png"
    picker.send_keys(str(dropped))
    browser.execute_script(
        "const t = new DataTransfer(); t.items.add(document.getElementById('picker').files[0]);"
        "document.dispatchEvent(new DragEvent('drop', {dataTransfer: t, bubbles: true}));"
    )
    results_settle(browser, 4)
    assert paths(browser)[0] == str(dropped)
    assert "uploaded image 04.png" in browser.find_element(By.ID, "summary").text


def test_a_result_opens_large_and_finds_similar(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=5")
    type_query(browser, "a yellow star")
    results_settle(browser, 5)
    chosen = cards(browser)[1]
    chosen_id, chosen_path = chosen.get_attribute("data-id"), paths(browser)[1]
    chosen.click()
    viewer = browser.find_element(By.ID, "viewer")
    wait(browser, lambda d: viewer.is_displayed())
    assert browser.find_element(By.ID, "v-path").text == chosen_path
    assert (
        browser.find_element(By.ID, "original")
        .get_attribute("href")
        .endswith(f"/image/{chosen_id}")
    )
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(browser, lambda d: not viewer.is_displayed())
    chosen.click()
    browser.find_element(By.ID, "find-similar").click()
    wait(browser, lambda d: f"similar={chosen_id}" in d.current_url)
    results_settle(browser, 5)
    assert chosen_path not in paths(browser)


def test_a_folder_filter_keeps_to_that_folder(browser, site):
    url, root = site
    browser.get(f"{url}/?k=8")
    browser.find_element(By.ID, "toggle-filters").click()
    browser.find_element(By.ID, "folder").send_keys(str(root / "photos" / "home"))
    type_query(browser, "a photo")
    results_settle(browser, 8)
    assert all("/home/" in p for p in paths(browser))
    assert "in=" in browser.current_url


def test_more_pages_and_downloads(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=5")
    type_query(browser, "a photo")
    results_settle(browser, 5)
    browser.find_element(By.ID, "more").click()
    results_settle(browser, 10)
    assert len(set(paths(browser))) == 10
    browser.find_element(By.ID, "download-paths").click()
    browser.find_element(By.ID, "download-json").click()
    folder = Path(browser.downloads)
    wait(browser, lambda d: (folder / "clipsearch-results.json").exists()
         and (folder / "clipsearch-paths.txt").exists())  # fmt: skip
    assert (folder / "clipsearch-paths.txt").read_text().split() == paths(browser)
    assert [
        i["path"] for i in json.loads((folder / "clipsearch-results.json").read_text())
    ] == paths(browser)


def test_nothing_found_and_a_phone_sized_window(browser, site):
    url, _ = site
    browser.set_window_size(390, 800)
    try:
        browser.get(f"{url}/?q=a+photo&in=/nowhere")
        wait(browser, lambda d: "Nothing matches" in d.find_element(By.ID, "message").text)
        browser.get(f"{url}/?q=a+photo&k=4")
        results_settle(browser, 4)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # nothing sticks out sideways
        assert cards(browser)[0].size["width"] < 390 / 2
    finally:
        browser.set_window_size(1280, 900)


def test_an_empty_store_and_a_keyed_server_say_so(browser, tmp_path):
    with serving(tmp_path / "empty") as url:
        browser.get(f"{url}/?q=a+dog")
        wait(browser, lambda d: "clipsearch index" in d.find_element(By.ID, "message").text)
    make_image(tmp_path / "photos" / "a.png")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store", api_key="s3cret") as url:
        browser.get(f"{url}/?q=a+dog")
        wait(browser, until.alert_is_present())
        prompt = browser.switch_to.alert
        prompt.send_keys("s3cret")
        prompt.accept()
        results_settle(browser, 1)  # the thumbnail loaded with the cookie, not a URL key
        assert "s3cret" not in browser.current_url


@pytest.mark.slow
def test_the_page_finds_what_the_command_line_finds_on_emoji(browser, emoji_models, tmp_path):
    """The emoji styles indexed with the model the tests train; the same text query in the
    page and in `clipsearch query`."""
    from typer.testing import CliRunner

    from clipsearch.cli import app

    model = str(emoji_models["dir"] / "tuned")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([EMOJI / "images" / "openmoji"], model=model)
    cli = CliRunner().invoke(
        app,
        ["query", "grinning face with big eyes", "-k", "8", "--store", str(tmp_path / "store"),
         "--model", model, "--precision", "fp32", "-f", "paths"],
    )  # fmt: skip
    with serving(tmp_path / "store", model=model, precision="fp32") as url:
        browser.get(f"{url}/?k=8")
        type_query(browser, "grinning face with big eyes")
        results_settle(browser, 8)
        assert paths(browser) == cli.stdout.split()
