"""The field station in a real browser (headless Chromium + Selenium) against the running app:
capture from a folder, exclude a frame, draw a care-mask polygon, build, validate, promote, a second
candidate, rollback, spot check. Each step is checked in the page *and* in the files it must change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from differad_edge.calibration.session import load_session
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from differad_edge.store import ReferenceStore

PRODUCT = "pump-a"
SHOTS = os.environ.get("DIFFERAD_STATION_SCREENSHOTS")  # a folder: save the README's screenshots there


def _wait(driver, condition, timeout: float = 30):
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def _shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


def _msg(driver) -> str:
    return _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".msg"))).text


def _fill(driver, form_action: str, **fields: str) -> None:
    form = driver.find_element(By.CSS_SELECTOR, f"form[action='{form_action}']")
    for name, value in fields.items():
        box = form.find_element(By.NAME, name)
        if box.tag_name == "select":
            Select(box).select_by_visible_text(value)
        elif box.get_attribute("type") == "checkbox":
            if bool(value) != box.is_selected():
                box.click()
        else:
            box.clear()
            box.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, lambda _d: _gone(form))  # the next page has loaded (no race with the old one)


def _gone(element) -> bool:
    """``EC.staleness_of``, but Chromium may also report a detached node as a generic inspector error
    ("Node with given id does not belong to the document") while the next page replaces it."""
    try:
        element.is_enabled()
    except (StaleElementReferenceException, WebDriverException):
        return True
    return False


def _capture(driver, station, source: Path) -> str:
    driver.get(station.url + "/")
    _fill(driver, "/live/start", product=PRODUCT, source=str(source))
    _wait(driver, EC.presence_of_element_located((By.ID, "live-frame")))
    # the panel is swapped every poll: act and read through the live DOM, not stale element handles
    driver.find_element(By.ID, "auto").click()
    _wait(driver, lambda d: d.execute_script("return !!document.getElementById('capturing')"))
    _wait(driver, lambda d: d.execute_script("return !!document.getElementById('ended')"), 60)
    return driver.execute_script("return document.getElementById('captured').textContent").strip()


@pytest.mark.slow  # ~30 s: two builds and validations through the browser
def test_field_workflow_in_the_browser(browser, station, capture_dir: Path) -> None:
    driver = browser
    store = ReferenceStore(station.settings.store)
    # -- capture from a folder source, live gate results per frame
    captured = _capture(driver, station, capture_dir)
    assert captured.startswith("20 captured"), captured
    driver.find_element(By.ID, "finish").click()
    assert "captured 20 frames" in _msg(driver)
    sid = driver.current_url.rstrip("/").split("/")[-1].split("?")[0]
    session_root = station.settings.workdir / "sessions" / sid
    cards = driver.find_elements(By.CSS_SELECTOR, "figure.thumb")
    assert len(cards) == 20
    blurred = driver.find_element(By.CSS_SELECTOR, "figure.thumb[data-name='f100_blurred.png']")
    assert "rejected" in blurred.text
    assert "[focus]" in blurred.text
    _shot(driver, "station-session.png")

    # -- exclude a frame (and the file says so), re-include another and exclude it again
    card = driver.find_element(By.CSS_SELECTOR, "figure.thumb[data-name='f001.png']")
    assert "accepted" in card.text
    card.find_element(By.CSS_SELECTOR, "button.toggle").click()
    _wait(driver, lambda d: "excluded" in d.find_element(By.CSS_SELECTOR, "figure.thumb[data-name='f001.png']").text)
    assert load_session(session_root).frame("f001.png").excluded
    card = driver.find_element(By.CSS_SELECTOR, "figure.thumb[data-name='f001.png']")
    assert card.find_element(By.CSS_SELECTOR, "button.toggle").text == "Re-include"

    # -- care mask: a polygon drawn on the anchor frame, saved in the YAML format
    driver.find_element(By.ID, "mask-link").click()
    canvas = _wait(driver, EC.presence_of_element_located((By.ID, "mask-canvas")))
    _wait(
        driver,
        lambda d: (
            d.execute_script(
                "return document.getElementById('mask-canvas').getContext('2d').getImageData(5, 5, 1, 1).data[3]"
            )
            == 255
        ),
    )
    rect = canvas.rect  # the canvas is CSS-scaled: the script maps clicks back to frame pixels
    sx = rect["width"] / 192
    sy = rect["height"] / 160
    for x, y in ((30, 20), (165, 20), (165, 140), (30, 140)):
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x * sx - rect["width"] / 2), int(y * sy - rect["height"] / 2)
        ).click().perform()
    driver.find_element(By.ID, "close-poly").click()
    driver.find_element(By.ID, "save-mask").click()
    status = _wait(driver, lambda d: d.find_element(By.ID, "mask-status").text or None)
    assert status.startswith("saved"), status
    assert driver.find_element(By.ID, "mask-preview").get_attribute("src").startswith("data:image/jpeg")
    _shot(driver, "station-mask.png")
    saved = yaml.safe_load((session_root / "care_mask.yaml").read_text())
    assert list(saved) == ["care"]
    assert len(saved["care"]) == 1
    assert len(saved["care"][0]) == 4
    (x0, y0), (x2, y2) = saved["care"][0][0], saved["care"][0][2]
    assert abs(x0 - 30) <= 2
    assert abs(y0 - 20) <= 2
    assert abs(x2 - 165) <= 2
    assert abs(y2 - 140) <= 2

    # -- build (with the mask, without the excluded frame) -> validate -> promote
    driver.get(f"{station.url}/session/{sid}")
    _fill(driver, f"/session/{sid}/build", operator="Dana Field")
    assert "built candidate v0001" in _msg(driver)
    cal = store.info(PRODUCT, "v0001").metadata["calibration"]
    assert "f001.png" not in cal["build"]["frames_used"]
    assert cal["care_mask_source"].endswith("care_mask.yaml")
    assert 0.5 < cal["build"]["care_fraction"] < 0.95
    _fill(driver, f"/product/{PRODUCT}/validate", version="v0001", session=sid, operator="Dana Field")
    assert "v0001 PASSED" in _msg(driver)
    assert store.info(PRODUCT, "v0001").validation["operator"] == "Dana Field"
    report = driver.find_element(By.ID, "report-link").get_attribute("href")
    _fill(driver, f"/product/{PRODUCT}/promote", version="v0001", operator="Dana Field")
    assert "active version is now v0001" in _msg(driver)
    assert store.active_version(PRODUCT) == "v0001"
    _shot(driver, "station-product.png")
    driver.get(report)
    assert "PASSED" in driver.find_element(By.TAG_NAME, "h1").text

    # -- a second candidate goes live, then rollback to v0001 (operator required: refused without one)
    driver.get(f"{station.url}/session/{sid}")
    _fill(driver, f"/session/{sid}/build", operator="")
    assert "built candidate v0002" in _msg(driver)
    _fill(driver, f"/product/{PRODUCT}/validate", version="v0002", session=sid, operator="Dana Field")
    assert "v0002 PASSED" in _msg(driver)
    _fill(driver, f"/product/{PRODUCT}/promote", version="v0002", operator="Dana Field")
    assert "active version is now v0002" in _msg(driver), driver.page_source[-2000:]
    assert store.active_version(PRODUCT) == "v0002"
    driver.execute_script(
        "document.querySelector(\"form[action$='/rollback'] input[name=operator]\").removeAttribute('required')"
    )
    _fill(driver, f"/product/{PRODUCT}/rollback", operator="")
    assert "operator" in driver.find_element(By.CSS_SELECTOR, ".error").text
    assert store.active_version(PRODUCT) == "v0002"
    driver.get(f"{station.url}/product/{PRODUCT}")
    _fill(driver, f"/product/{PRODUCT}/rollback", operator="Dana Field")
    assert "rolled back, active version is now v0001" in _msg(driver)
    assert store.active_version(PRODUCT) == "v0001"
    history = driver.find_element(By.ID, "history").text
    assert "rollback" in history
    assert "Dana Field" in history
    assert [e["event"] for e in store.history(PRODUCT)][-1] == "rollback"

    # -- spot check: a live frame through the candidate and the active version side by side
    driver.get(station.url + "/")
    _fill(driver, "/live/start", product=PRODUCT, source=str(capture_dir))
    _wait(driver, EC.presence_of_element_located((By.ID, "live-frame")))
    _shot(driver, "station-live.png")
    driver.get(f"{station.url}/product/{PRODUCT}/spot?version=v0002")
    _shot(driver, "station-spot.png")
    sides = driver.find_elements(By.CSS_SELECTOR, ".spot figure")
    assert len(sides) == 2
    assert "candidate v0002" in sides[0].text
    assert "active v0001" in sides[1].text
    assert all(any(v in s.text for v in ("OK", "NG", "NOT_INSPECTED")) for s in sides)
    first = driver.find_element(By.TAG_NAME, "h1").text
    driver.find_element(By.ID, "spot-next").click()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text != first)  # the next live frame


def test_an_unknown_source_is_one_readable_error(browser, station) -> None:
    """Errors are one readable line on the page (here: an unknown source), not a traceback."""
    browser.get(station.url + "/")
    _fill(browser, "/live/start", product=PRODUCT, source="/nonexistent/camera")
    text = browser.find_element(By.CSS_SELECTOR, ".error").text
    assert "does not exist" in text
    assert "Traceback" not in browser.page_source


@pytest.mark.parametrize("path", ["/", f"/product/{PRODUCT}", "/live"])
def test_exposed_mode_refuses_requests_without_the_token(browser, tmp_path: Path, path: str) -> None:
    import urllib.error
    import urllib.request

    from differad_edge.calibration.station import StationSettings
    from station_helpers import serve

    token = "s3cret-token-0123"
    for served in serve(StationSettings(store=tmp_path / "store", workdir=tmp_path / "work", token=token)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(served.url + path, timeout=10)
        assert e.value.code == 401
        req = urllib.request.Request(served.url + "/live/start", data=b"product=p&source=x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(
                urllib.request.Request(served.url + "/", headers={"X-Station-Token": "wrong-token-000"})
            )
        assert e.value.code == 401
        ok = urllib.request.urlopen(urllib.request.Request(served.url + "/", headers={"X-Station-Token": token}))
        assert ok.status == 200
        browser.delete_all_cookies()
        browser.get(served.url + path)
        assert "needs its token" in browser.page_source
        browser.get(served.url + f"/?token={token}")  # first visit with the token: a cookie carries it on
        assert "Capture" in browser.page_source
        browser.get(served.url + "/")
        assert "needs its token" not in browser.page_source
        browser.delete_all_cookies()
