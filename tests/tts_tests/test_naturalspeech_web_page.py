"""The server's web page in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium).

The page's script records what happens in `window.__ttsEvents` (request, first-chunk, stream-complete, ended,
error); the test types a text, presses Speak and reads them. It checks that playback is scheduled from the first
chunk while the rest still streams, that the whole audio plays to its end on the page's Web Audio clock, and that
the page shows the server's message for bad input. `make setup` installs the browser on Debian (`system-deps`);
Ubuntu ships Chromium only as a snap, and without `chromium` and `chromedriver` on the PATH the tests are skipped.
"""

import json
import shutil
import time

import pytest

from tests.tts_tests.test_naturalspeech_cli import run_dir  # noqa: F401  (fixture used by name)
from tests.tts_tests.test_naturalspeech_server import _request, server  # noqa: F401
from tests.tts_tests.test_naturalspeech_server_speakers import speaker_server, two_speaker_run_dir  # noqa: F401

TEXT = " ".join(
    [
        "The quick brown fox jumps over the lazy dog.",
        "Be a voice, not an echo!",
        "In the beginning, they paid; then they left.",
    ]
    * 3
)


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("chromium and chromium-driver are not installed (make setup installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra (make setup)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(argument)
    # the Debian driver, never one Selenium Manager would download
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _speak_on_page(driver, url: str, text: str, timeout: float = 180, speaker: str | None = None) -> list[dict]:
    """Speak `text` on the page (choosing the option of `speaker`'s id in the speaker selector); its events."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    driver.get(url + "/")
    if speaker is not None:
        # the selector is filled from /api/info once the page has loaded
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return !speaker.closest('p').hidden"))
        Select(driver.find_element(By.ID, "speaker")).select_by_value(speaker)
    area = driver.find_element(By.ID, "text")
    area.clear()
    driver.execute_script("arguments[0].value = arguments[1];", area, text)
    driver.find_element(By.ID, "speak").click()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = driver.execute_script("return window.__ttsEvents;")
        if any(event["type"] in ("ended", "error") for event in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"the page neither finished nor failed in {timeout} s: {json.dumps(events)[:2000]}")


@pytest.mark.slow
def test_page_plays_the_stream_to_the_end(browser, server):  # noqa: F811
    url, _ = server
    events = _speak_on_page(browser, url, TEXT)
    print(json.dumps(events))
    by_type = {event["type"]: event for event in events}
    assert "error" not in by_type, events
    assert [e["type"] for e in events] == ["request", "first-chunk", "stream-complete", "ended"], events
    status, body, _ = _request(url, "/api/timings", {"text": TEXT})
    assert status == 200
    num_samples = json.loads(body)["num_samples"]  # durations, hence lengths, do not depend on the noise
    complete, ended = by_type["stream-complete"], by_type["ended"]
    assert complete["samples"] == ended["samples"] == num_samples
    assert complete["chunks"] > 1
    # playback was scheduled from the first chunk, before the rest of the stream had arrived
    assert by_type["first-chunk"]["time"] < complete["time"]
    # the page's audio clock ran through the whole audio before the last piece ended
    assert ended["audioClock"] >= ended["seconds"]
    status_text = browser.find_element("id", "status").text
    assert status_text.startswith("Done:"), status_text


@pytest.mark.slow
def test_page_shows_the_servers_message_for_bad_text(browser, server):  # noqa: F811
    events = _speak_on_page(browser, server[0], "-")
    errors = [event for event in events if event["type"] == "error"]
    assert errors and errors[0]["status"] == 400
    assert "no speakable characters" in errors[0]["message"]
    assert "no speakable characters" in browser.find_element("id", "status").text


@pytest.mark.slow
def test_page_offers_the_speakers_of_a_multi_speaker_model(browser, speaker_server, server):  # noqa: F811
    from selenium.webdriver.common.by import By

    events = _speak_on_page(browser, speaker_server, "Be a voice, not an echo.", speaker="1")
    assert [e["type"] for e in events] == ["request", "first-chunk", "stream-complete", "ended"], events
    assert events[0]["speaker_id"] == 1
    options = [o.text for o in browser.find_element(By.ID, "speaker").find_elements(By.TAG_NAME, "option")]
    assert options == ["anna (0)", "ben (1)"]
    lengths = {}
    for speaker in ("anna", "ben"):
        fields = {"text": "Be a voice, not an echo.", "speaker_id": speaker}
        lengths[speaker] = json.loads(_request(speaker_server, "/api/timings", fields)[1])["num_samples"]
    assert lengths["anna"] != lengths["ben"]  # so the played length tells which speaker the page asked for
    assert events[2]["samples"] == lengths["ben"]
    # a single-speaker model: no selector
    browser.get(server[0] + "/")
    time.sleep(1.0)  # the page's /api/info request
    assert browser.execute_script("return document.getElementById('speaker-row').hidden")
