"""Open an HTML file in headless Chromium (Debian's chromium + chromium-driver via
Selenium), report how every <img> rendered and take a screenshot.

Also a script: ``python tests/_browser.py report/index.html shot.png [WIDTH HEIGHT]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find(candidates, name):
    for path in candidates:
        if Path(path).is_file():
            return path
    return shutil.which(name)


def available() -> str | None:
    """None if a browser can be driven here, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not find(CHROMIUM, "chromium"):
        return "no Chromium (apt-get install chromium chromium-driver)"
    if not find(DRIVER, "chromedriver"):
        return "no chromedriver (apt-get install chromium-driver)"
    return None


def render(html: Path, screenshot: Path, size=(1280, 900)) -> list[dict]:
    """Load ``html``, wait for it, return [{alt, naturalWidth, naturalHeight, complete}] of every <img>,
    and save a screenshot of the first screen."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = find(CHROMIUM, "chromium")
    profile = tempfile.mkdtemp(prefix="mechrare-chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=find(DRIVER, "chromedriver")), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(html).resolve().as_uri())
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all([...document.images].map(i => i.decode().catch(() => null))).then(() => done(true));"
        )
        images = driver.execute_script(
            "return [...document.images].map(i => ({alt: i.alt, naturalWidth: i.naturalWidth, "
            "naturalHeight: i.naturalHeight, complete: i.complete}));"
        )
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return images
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    html, out = Path(sys.argv[1]), Path(sys.argv[2])
    size = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1280, 900)
    for img in render(html, out, size):
        print(img)
    print(f"screenshot: {out}")
