"""The leaderboard page in a real headless browser (Debian's chromium + chromedriver, driven by Selenium).

Skipped where no browser is installed, unless SSL_BENCH_REQUIRE_BROWSER=1 (CI sets it, so it never skips there).
"""

import os
import shutil

import pytest
from leaderboard_records import write_table

from ssl_bench.leaderboard import write_leaderboard

EVIL = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("SSL_BENCH_REQUIRE_BROWSER") == "1"

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None

if not REQUIRED and (webdriver is None or not CHROMIUM or not DRIVER):
    pytest.skip("no headless chromium/chromedriver/selenium here", allow_module_level=True)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def page(tmp_path):
    results = tmp_path / "lb"
    write_table(results, {"fixmatch": [0.93, 0.91, 0.95], "mixmatch": [0.97, 0.90, 0.92], "supervised": [0.8] * 3})
    evil = {"name": "x", "description": EVIL}
    write_table(results, {"fixmatch": [0.90, 0.91]}, dataset="cifar10", n=250, recipe=evil)
    write_leaderboard(results)
    return (results / "index.html").as_uri()


def digits_table(driver):
    return driver.find_element(By.CSS_SELECTOR, 'section[data-dataset="digits"] table')


def column(table, header):
    heads = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    i = heads.index(header)
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    return [tr.find_elements(By.TAG_NAME, "td")[i].text.strip() for tr in rows]


def test_page_renders_sorts_filters_and_shows_script_as_text(browser, tmp_path):
    browser.get(page(tmp_path))
    assert browser.title == "ssl_bench leaderboard"
    assert len(browser.find_elements(By.CSS_SELECTOR, "tbody tr")) >= 10
    table = digits_table(browser)
    assert column(table, "algorithm") == ["fixmatch", "mixmatch", "supervised"]
    header = next(th for th in table.find_elements(By.CSS_SELECTOR, "thead th") if th.text.strip() == "20 labels")
    header.click()  # ascending by the mean: supervised 80.00, mixmatch 93.00, fixmatch 93.00 + ...
    means = [float(c.split()[0]) for c in column(table, "20 labels")]
    assert means == sorted(means) and column(table, "algorithm")[0] == "supervised"
    header.click()
    assert column(table, "algorithm")[-1] == "supervised" and header.get_attribute("aria-sort") == "descending"
    # the recipe description is text on the page, and no script ran
    assert EVIL in browser.find_element(By.TAG_NAME, "body").text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    # filter: only the cifar10 section stays visible
    Select(browser.find_element(By.ID, "dataset-filter")).select_by_value("cifar10")
    assert not digits_table(browser).is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, 'section[data-dataset="cifar10"]').is_displayed()
    # a cell opens to its seeds and records
    Select(browser.find_element(By.ID, "dataset-filter")).select_by_value("")
    cell = digits_table(browser).find_element(By.CSS_SELECTOR, "details summary")
    cell.click()
    assert "seeds: 1, 2, 3" in digits_table(browser).find_element(By.CSS_SELECTOR, "details").text
