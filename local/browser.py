"""Headless Chromium driven by Selenium, for the dashboard's browser test and benchmark.

Uses Debian's `chromium` and `chromium-driver` (`make install-browser` installs them
when it can): Selenium's own driver download and Playwright's browsers cannot be
fetched on these machines, so Selenium Manager is bypassed with explicit paths.
"""

import shutil

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class BrowserMissing(RuntimeError):
    pass


def find() -> tuple:
    """(browser path, chromedriver path); raises BrowserMissing with what to install."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise BrowserMissing(
            "the dashboard's browser tests need Chromium and its driver: run "
            "'make install-browser' (apt-get install chromium chromium-driver)"
        )
    return browser, driver


def start(width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = find()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # No background networking: on a closed network Chromium's own connections to Google's
    # services are refused by the dozen and slow its start.
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
