"""The search page in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium), against a real server over a real store."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from helpers import (
    EMOJI,
    camera_photo,
    make_image,
    photos_with_copies,
    serving,
    serving_watched,
    sign,
)

from clipsearch import Library

selenium = pytest.importorskip("selenium", reason="selenium is not installed (the dev extra)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as until  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

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


def open_browser(profile: str):
    """Debian's Chromium under Selenium, headless, with a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        )
    driver = open_browser(str(tmp_path_factory.mktemp("chromium-profile")))
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
    """The shown results' paths, read at one instant (the grid may be replaced meanwhile)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid figure img')].map((i) => i.alt)"
    )


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


def test_a_file_found_by_its_words_says_which_under_its_picture(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=8")
    type_query(browser, "trip")
    results_settle(browser, 8)
    assert all("/trip/" in p for p in paths(browser))  # the 8 in that folder, first
    lines = browser.find_elements(By.CSS_SELECTOR, "#grid figcaption .matched")
    assert len(lines) == 8 and lines[0].text == "folder: trip"
    assert lines[0].find_element(By.TAG_NAME, "mark").text == "trip"


def test_the_viewer_draws_the_text_read_in_a_picture(browser, tmp_path):
    """With `index --ocr`: a search for a sign's word finds it, and its viewer lists the
    lines and draws each line's box over the picture where the words are."""
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra is not installed")
    from clipsearch.core.config import IndexOptions

    photos = tmp_path / "photos"
    sign(photos / "IMG_0001.jpg", ["HARBOUR"], seed=1, size=(1600, 1000), at=(800, 600),
         height=120)  # fmt: skip
    make_image(photos / "IMG_0002.jpg", size=(400, 300), seed=2)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([photos], model=MODEL, options=IndexOptions(ocr=True))
    with serving(tmp_path / "store", precision="fp32") as url:
        browser.get(f"{url}/?k=2")
        type_query(browser, "harbour")
        results_settle(browser, 2)
        assert paths(browser)[0].endswith("IMG_0001.jpg")
        cards(browser)[0].click()
        wait(browser, lambda d: d.find_element(By.ID, "v-text").is_displayed())
        assert browser.find_element(By.ID, "v-text").text == "HARBOUR"
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#boxes polygon"))
        (box,) = browser.find_elements(By.CSS_SELECTOR, "#boxes polygon")
        shown = browser.find_element(By.ID, "large").rect
        drawn = box.rect  # on the screen: where the words are in the shown picture
        assert shown["width"] > 0
        left = (drawn["x"] - shown["x"]) / shown["width"]
        top = (drawn["y"] - shown["y"]) / shown["height"]
        assert 0.45 < left < 0.55 and 0.55 < top < 0.68  # drawn at (800, 600) of 1600x1000


@pytest.mark.parametrize(
    "field, value, kept",
    [("camera", "iphone", "phone.jpg"), ("near", "48.86, 2.29, 5", "canon.jpg")],
)
def test_a_camera_or_place_filter_keeps_to_those_photos(browser, tmp_path, field, value, kept):
    camera_photo(tmp_path / "photos" / "canon.jpg", 1, "Canon", "Canon EOS R5", (48.8584, 2.2945))
    camera_photo(tmp_path / "photos" / "phone.jpg", 2, "Apple", "iPhone 15", (41.8902, 12.4922))
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        browser.get(f"{url}/")
        browser.find_element(By.ID, "toggle-filters").click()
        browser.find_element(By.ID, field).send_keys(value)
        type_query(browser, "a photo")
        results_settle(browser, 1)
        assert [Path(p).name for p in paths(browser)] == [kept]
        assert f"{field}={value[:5]}" in browser.current_url


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


def test_an_empty_store_and_a_keyed_server_say_so_and_sign_out(browser, tmp_path):
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
        assert shown(browser, "sign-out")
        browser.find_element(By.ID, "sign-out").click()
        wait(browser, lambda d: "Signed out" in d.find_element(By.ID, "message").text)
        assert not shown(browser, "sign-out")
        browser.get(f"{url}/?q=a+dog")
        wait(browser, until.alert_is_present())  # the key is asked for again
        browser.switch_to.alert.dismiss()


def test_with_serve_watch_the_page_says_what_indexing_does_and_finds_new_photos(browser, tmp_path):
    folder = tmp_path / "photos"
    make_image(folder / "old.png", seed=1)
    with serving_watched(tmp_path / "store", folder) as (url, _):
        browser.get(f"{url}/?q=a+photo")
        line = lambda d: d.find_element(By.ID, "watching").text  # noqa: E731
        wait(browser, lambda d: "1 changed since the server started" in line(d))
        assert "Watching for new photos" in line(browser) and "none yet" not in line(browser)
        make_image(folder / "new.png", seed=2)
        wait(browser, lambda d: "2 changed" in line(d))  # it asks again every 5 s
        browser.refresh()
        results_settle(browser, 2)
    with serving(tmp_path / "store") as url:  # without --watch, no such line
        browser.get(f"{url}/?q=a+photo")
        results_settle(browser, 2)
        assert not shown(browser, "watching")


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


def shot(driver, tmp_path, name: str) -> None:
    """A screenshot of the state a test checks: kept with the test's files, and in
    $CLIPSEARCH_SCREENSHOTS too when that names a folder (to look at them)."""
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    if os.environ.get("CLIPSEARCH_SCREENSHOTS"):
        driver.save_screenshot(str(Path(os.environ["CLIPSEARCH_SCREENSHOTS"]) / f"{name}.png"))


def shown(driver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def summary(driver) -> str:
    return driver.find_element(By.ID, "summary").text


def test_an_older_search_answering_last_is_dropped(browser, site, monkeypatch, tmp_path):
    url, _ = site
    monkeypatch.setenv("CLIPSEARCH_FAULT", "serve-search:pizza=sleep:2")
    browser.get(f"{url}/?k=4")
    type_query(browser, "pizza")
    type_query(browser, "soccer ball")
    time.sleep(3)  # the pizza answer has come by now, after the soccer one
    results_settle(browser, 4)
    assert "soccer ball" in summary(browser) and "pizza" not in summary(browser)
    expected = api_paths(url, "soccer ball", 4)
    assert paths(browser) == expected
    shot(browser, tmp_path, "race")


def api_paths(url: str, query: str, k: int, **body) -> list[str]:
    import httpx

    answer = httpx.post(f"{url}/api/v1/search", json={"query": query, "k": k, **body}, timeout=60)
    return [item["path"] for item in answer.json()["items"]]


def test_more_clicked_twice_loads_one_page(browser, site, monkeypatch):
    url, _ = site
    browser.get(f"{url}/?k=5")
    type_query(browser, "a photo")
    results_settle(browser, 5)
    monkeypatch.setenv("CLIPSEARCH_FAULT", "serve-search=sleep:1")
    more = browser.find_element(By.ID, "more")
    ActionChains(browser).double_click(more).perform()
    browser.execute_script("document.getElementById('more').click()")  # even past `disabled`
    results_settle(browser, 10)
    time.sleep(1.5)
    assert len(paths(browser)) == 10 and len(set(paths(browser))) == 10


def test_no_paging_buttons_on_an_empty_page_while_loading_or_after_a_failure(
    browser, site, monkeypatch, tmp_path
):
    url, _ = site
    browser.get(f"{url}/")
    assert not shown(browser, "more-row") and not shown(browser, "loading")
    monkeypatch.setenv("CLIPSEARCH_FAULT", "serve-search=sleep:2")
    type_query(browser, "a photo")
    wait(browser, lambda d: shown(d, "loading"))
    assert browser.find_element(By.ID, "results").get_attribute("aria-busy") == "true"
    assert not browser.find_element(By.ID, "go").is_enabled()
    assert not shown(browser, "more-row")
    shot(browser, tmp_path, "loading")
    wait(browser, lambda d: not shown(d, "loading"))
    assert browser.find_element(By.ID, "results").get_attribute("aria-busy") == "false"
    monkeypatch.setenv("CLIPSEARCH_FAULT", "serve-search:broken=raise")
    browser.get(f"{url}/")
    type_query(browser, "broken")
    wait(browser, lambda d: shown(d, "retry"))
    assert not shown(browser, "more-row")


def test_a_failure_keeps_the_results_and_offers_a_retry(browser, site, monkeypatch, tmp_path):
    url, _ = site
    browser.get(f"{url}/?k=4")
    type_query(browser, "a photo")
    results_settle(browser, 4)
    before = paths(browser)
    monkeypatch.setenv("CLIPSEARCH_FAULT", "serve-search:tulips=raise")
    type_query(browser, "tulips")
    wait(browser, lambda d: shown(d, "retry"))
    assert (
        paths(browser) == before and "internal error" in browser.find_element(By.ID, "message").text
    )
    shot(browser, tmp_path, "failure")
    monkeypatch.delenv("CLIPSEARCH_FAULT")
    browser.find_element(By.ID, "retry").click()
    wait(browser, lambda d: "tulips" in summary(d))
    assert not shown(browser, "retry")


def test_a_stopped_server_keeps_the_results_on_screen(browser, tmp_path):
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        browser.get(f"{url}/?k=3")
        type_query(browser, "a photo")
        results_settle(browser, 3)
    type_query(browser, "another photo")
    wait(browser, lambda d: "Could not reach" in d.find_element(By.ID, "message").text)
    assert len(cards(browser)) == 3 and shown(browser, "retry")
    shot(browser, tmp_path, "server-down")


def test_similar_mode_survives_filter_changes_and_reload(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=5&similar=3")
    results_settle(browser, 5)
    assert "image #3" in browser.find_element(By.ID, "chips").text
    browser.find_element(By.ID, "toggle-filters").click()
    Select(browser.find_element(By.ID, "sort")).select_by_value("-date")
    wait(browser, lambda d: "sort=-date" in d.current_url)
    results_settle(browser, 5)
    assert "similar=3" in browser.current_url
    dates = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#grid .date")]
    assert dates == sorted(dates, reverse=True) and all(len(d) == 10 for d in dates)
    browser.refresh()
    results_settle(browser, 5)
    assert "image #3" in summary(browser)


def test_cards_and_the_viewer_by_keyboard(browser, site, tmp_path):
    url, _ = site
    browser.get(f"{url}/?k=6&q=a+photo")
    results_settle(browser, 6)
    assert browser.find_element(By.TAG_NAME, "h1").text == "clipsearch"
    first = browser.find_element(By.CSS_SELECTOR, "#grid figure .open")
    for _ in range(40):  # Tab from the top of the page reaches the first card
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element == first:
            break
    assert browser.switch_to.active_element == first
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait(browser, lambda d: shown(d, "viewer"))
    assert browser.switch_to.active_element.get_attribute("id") == "close"
    assert browser.find_element(By.ID, "v-path").text == paths(browser)[0]
    for _ in range(12):  # focus stays in the dialog
        ActionChains(browser).send_keys(Keys.TAB).perform()
        assert browser.execute_script(
            "return document.getElementById('viewer').contains(document.activeElement)"
        )
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    assert browser.find_element(By.ID, "v-path").text == paths(browser)[1]
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    assert browser.find_element(By.ID, "v-path").text == paths(browser)[0]
    browser.find_element(By.ID, "next").click()
    assert browser.find_element(By.ID, "v-path").text == paths(browser)[1]
    shot(browser, tmp_path, "viewer")
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait(browser, lambda d: not shown(d, "viewer"))
    assert browser.switch_to.active_element == first


def axe_violations(driver) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is now."""
    from importlib import resources

    script = (resources.files("axe_core_python") / "axe.min.js").read_text(encoding="utf-8")
    driver.execute_script(script)
    result = driver.execute_async_script(
        "axe.run(document, {resultTypes: ['violations']}).then(arguments[arguments.length - 1])"
    )
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_problem(browser, site, scheme, tmp_path):
    pytest.importorskip("axe_core_python", reason="axe-core-python is not installed (dev)")
    url, _ = site
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    try:
        browser.get(f"{url}/?k=6&q=a+photo&ext=png")
        results_settle(browser, 6)
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert (background == "rgb(21, 23, 26)") == (scheme == "dark")
        shot(browser, tmp_path, f"page-{scheme}")
        problems = axe_violations(browser)
        assert not problems, [(v["id"], v["help"], len(v["nodes"])) for v in problems]
        cards(browser)[0].find_element(By.CLASS_NAME, "open").click()
        wait(browser, lambda d: shown(d, "viewer"))
        problems = axe_violations(browser)
        assert not problems, [(v["id"], v["help"], len(v["nodes"])) for v in problems]
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_an_image_chosen_with_the_upload_button_and_its_chip(browser, site, tmp_path):
    url, root = site
    browser.get(f"{url}/?k=4")
    upload = browser.find_element(By.ID, "upload")
    assert upload.get_attribute("accept") == "image/*" and upload.get_attribute("type") == "file"
    chosen = root / "photos" / "trip" / "06.png"
    upload.send_keys(str(chosen))
    results_settle(browser, 4)
    assert paths(browser)[0] == str(chosen)
    chip = browser.find_element(By.CSS_SELECTOR, "#chips .chip")
    assert "06.png" in chip.text and chip.find_element(By.TAG_NAME, "img")
    shot(browser, tmp_path, "upload-chip")
    chip.find_element(By.TAG_NAME, "button").click()
    wait(browser, lambda d: not cards(d))
    assert not browser.find_elements(By.CSS_SELECTOR, "#chips .chip")


def test_hidden_filters_show_as_chips_that_remove_them(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=8&q=a+photo&ext=jpg&min=0.5")
    wait(browser, lambda d: "Nothing matches" in d.find_element(By.ID, "message").text)
    assert not shown(browser, "filters")
    chips = browser.find_element(By.ID, "chips")
    assert "Type: jpg" in chips.text and "Min score: 0.5" in chips.text
    for chip in browser.find_elements(By.CSS_SELECTOR, "#chips .chip"):
        if "Type" in chip.text:
            chip.find_element(By.TAG_NAME, "button").click()
            break
    wait(browser, lambda d: "ext=" not in d.current_url)
    browser.find_element(By.CSS_SELECTOR, "#chips .chip button").click()  # the min score
    results_settle(browser, 8)
    assert "min=" not in browser.current_url


def test_min_score_and_sort_reach_the_api(browser, site):
    url, _ = site
    everything = api_paths(url, "a photo", 16)
    browser.get(f"{url}/?k=16&q=a+photo&sort=date")
    results_settle(browser, 16)
    assert paths(browser) == api_paths(url, "a photo", 16, sort="date")
    assert sorted(paths(browser)) == sorted(everything)
    scores = api_scores(url, "a photo")
    middle = sum(sorted(scores)[7:9]) / 2  # between two (the API rounds its scores)
    browser.get(f"{url}/?k=16&q=a+photo&min={middle}")
    results_settle(browser, sum(s >= middle for s in scores))


def api_scores(url: str, query: str) -> list[float]:
    import httpx

    answer = httpx.post(f"{url}/api/v1/search", json={"query": query, "k": 16}, timeout=60)
    return [item["score"] for item in answer.json()["items"]]


def test_cards_find_similar_and_carry_sharp_thumbnails(browser, site):
    url, _ = site
    browser.get(f"{url}/?k=4&q=a+photo")
    results_settle(browser, 4)
    image = cards(browser)[2].find_element(By.TAG_NAME, "img")
    assert "?size=512 2x" in image.get_attribute("srcset")
    chosen = cards(browser)[2].get_attribute("data-id")
    cards(browser)[2].find_element(By.CLASS_NAME, "similar").click()
    wait(browser, lambda d: f"similar={chosen}" in d.current_url)
    results_settle(browser, 4)
    assert chosen not in [c.get_attribute("data-id") for c in cards(browser)]


def test_back_returns_to_where_the_page_was_scrolled(browser, site):
    url, _ = site
    browser.set_window_size(800, 500)
    try:
        browser.get(f"{url}/?k=16&q=a+photo")
        results_settle(browser, 16)
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        scrolled = browser.execute_script("return window.scrollY")
        assert scrolled > 300
        time.sleep(0.5)  # the page notes where it is
        cards(browser)[-1].find_element(By.CLASS_NAME, "similar").click()
        wait(browser, lambda d: "similar=" in d.current_url)
        browser.back()
        wait(browser, lambda d: "similar=" not in d.current_url)
        results_settle(browser, 16)
        wait(browser, lambda d: abs(d.execute_script("return window.scrollY") - scrolled) < 40)
    finally:
        browser.set_window_size(1280, 900)


def test_the_duplicates_view_marks_the_keeper_and_copies_the_others(browser, tmp_path):
    photos_with_copies(tmp_path / "photos")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        browser.get(f"{url}/")
        browser.find_element(By.LINK_TEXT, "Duplicates").click()
        wait(browser, lambda d: "near" in d.find_element(By.ID, "summary").text)  # the default
        Select(browser.find_element(By.ID, "kind")).select_by_value("exact")
        browser.find_element(By.ID, "go").click()
        wait(browser, lambda d: "exact" in d.find_element(By.ID, "summary").text)
        figures = browser.find_elements(By.CSS_SELECTOR, ".group figure")
        assert len(figures) == 3 and "keep" in figures[0].get_attribute("class")
        names = [f.find_element(By.CLASS_NAME, "name").text for f in figures]
        assert sorted(Path(n).name for n in names) == ["p0-again.png", "p0-copy.png", "p0.png"]
        assert "kind=exact" in browser.current_url
        if importlib.util.find_spec("axe_core_python"):
            problems = axe_violations(browser)
            assert not problems, [(v["id"], v["help"], len(v["nodes"])) for v in problems]
        browser.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": url},
        )
        browser.find_element(By.ID, "copy").click()
        wait(browser, lambda d: "Copied 2" in d.find_element(By.ID, "message-text").text)
        copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])")
        assert copied.splitlines() == names[1:]
