"""Open an HTML file in headless Chromium (Debian's chromium + chromium-driver via
Selenium), report how every <img> rendered and take a screenshot.

Also a script: ``python tests/_browser.py report/index.html shot.png [WIDTH HEIGHT [FULL_PAGE.png]]``.
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


def render(html: Path, screenshot: Path, size=(1400, 900), full_page: Path | None = None) -> dict:
    """Load ``html`` in a window ``size`` wide and high, wait for it, and return {"images": [{alt,
    naturalWidth, naturalHeight, complete}] of every <img>, "overflow": how many CSS pixels the page is
    wider than the window (0: no horizontal scroll)}; save a screenshot of the first screen, and with
    ``full_page`` one of the whole page."""
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
        overflow = driver.execute_script(
            "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth;")
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        if full_page is not None:
            height = driver.execute_script("return document.documentElement.scrollHeight;")
            driver.set_window_size(size[0], min(int(height) + 150, 30000))
            Path(full_page).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(full_page))
        return {"images": images, "overflow": int(overflow)}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    html, out = Path(sys.argv[1]), Path(sys.argv[2])
    size = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1400, 900)
    full = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    seen = render(html, out, size, full)
    for img in seen["images"]:
        print(img)
    print(f"horizontal overflow: {seen['overflow']} px; screenshot: {out}" + (f"; full page: {full}" if full else ""))
