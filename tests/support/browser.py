"""A real browser for page tests: Debian's Chromium, driven by Selenium through Debian's chromedriver (nothing is
downloaded at test time), with fake media devices fed from a clip the test writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.media import write_video

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-sandbox", "--headless=new", "--mute-audio"]


def chromium(profile: Path, fake_video: Path | None = None, extra: tuple[str, ...] = (), size=(1100, 900)):
    """A headless Chromium whose camera is `fake_video` (a .y4m) and whose capture prompts are accepted."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and shutil.which("chromedriver")):
        raise RuntimeError("chromium and chromium-driver are not installed: run .ci/setup")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [*QUIET, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                     "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                     "--allow-loopback-in-peer-connection", *extra]:
        options.add_argument(argument)
    if fake_video is not None:
        options.add_argument(f"--use-file-for-fake-video-capture={fake_video}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    return driver


def write_y4m(path: Path, frames, fps: int = 25) -> Path:
    """Raw I420 frames in a Y4M file: what Chromium's fake camera plays (in a loop)."""
    return write_video(path, frames, fps, "rawvideo", "yuv4mpegpipe")


class Browser:
    """A driver whose blocking calls run in a worker thread, so that servers on the test's event loop (the daemon,
    a page's other origin) keep answering the page meanwhile."""

    def __init__(self, driver):
        self.driver = driver

    async def do(self, action, *args):
        """`await browser.do(lambda d: d.get(url))`: run `action(driver, *args)` off the event loop."""
        import asyncio

        return await asyncio.to_thread(action, self.driver, *args)

    async def wait(self, predicate, timeout: float, step: float = 0.2) -> bool:
        """Poll `predicate(driver)` (off the loop) until it is true or `timeout` passes. An element that is not
        there yet, or went stale because the page was navigating, counts as "not yet" (as in Selenium's own
        WebDriverWait)."""
        import asyncio
        import time

        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        def check(driver):
            try:
                return bool(predicate(driver))
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.do(check):
                return True
            await asyncio.sleep(step)
        return await self.do(check)

    def text(self, element_id: str):
        return self.do(lambda d: d.find_element("id", element_id).text)

    async def quit(self) -> None:
        await self.do(lambda d: d.quit())
