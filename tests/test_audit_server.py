"""The feed audit from the server: ``POST /audit`` and the page at ``GET /ui``, in a real headless Chromium.

The browser test drives Debian's ``chromium`` through ``chromium-driver`` (Selenium) against a real
``givetake serve`` with an API key: it pastes three posts and sees three results, uploads a small CSV
and sees the report's charts, and saves screenshots (to ``GIVETAKE_SCREENSHOTS`` when set, else the
test's temp folder). Without Chromium it skips, unless ``GIVETAKE_REQUIRE_BROWSER=1`` (set by .ci/run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.helpers import AUTH, KEY, check_report_html, running_server, service_client, write_accounts_csv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover - selenium is in the dev extra
    HAVE_SELENIUM = False

# In-process app tests; the Chromium test also runs a real server, and is the second test
# `make test` runs on one (CI requires the browser: GIVETAKE_REQUIRE_BROWSER=1).
pytestmark = pytest.mark.asgi


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    with service_client(trained_run, GIVETAKE_API_KEY=KEY) as c:
        yield c


@pytest.fixture(scope="module")
def accounts_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "accounts.csv"
    write_accounts_csv(path)
    return path


def test_audit_endpoint_answers_json_and_html(client: TestClient, accounts_csv: Path) -> None:
    files = {"file": ("accounts.csv", accounts_csv.read_bytes(), "text/csv")}
    resp = client.post("/audit", files=files, data={"rule": "5-3-2"}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert sorted(a["account"] for a in report["accounts"]) == ["helpdesk", "library", "studio"]
    assert report["rule"]["name"] == "5-3-2" and report["input"]["files"] == ["accounts.csv"]
    assert report["error_rates"]["source"] == "validation"
    page = client.post("/audit", files=files, headers={**AUTH, "Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    check_report_html(page.text)
    # The same figures as the CLI's code path (the service shares it): the same posts per account.
    assert {a["account"]: a["posts"] for a in report["accounts"]} == {"studio": 20, "library": 20, "helpdesk": 20}


def test_audit_endpoint_refuses_bad_input_in_one_line(client: TestClient, accounts_csv: Path) -> None:
    csv_file = {"file": ("accounts.csv", accounts_csv.read_bytes(), "text/csv")}
    for files, data, says in [
        (csv_file, {"rule": "90-10"}, "rule '90-10': choose one of 80-20, thirds, 5-3-2"),
        (csv_file, {"author_column": "who"}, "accounts.csv: no author column 'who'"),
        ({"file": ("notes.txt", b"hello", "text/plain")}, {}, "notes.txt: unsupported input type '.txt'"),
    ]:
        resp = client.post("/audit", files=files, data=data, headers=AUTH)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"].startswith(says) or says in resp.json()["error"]
        assert "/tmp" not in resp.json()["error"]


def test_audit_needs_the_key_and_the_page_does_not(client: TestClient, accounts_csv: Path) -> None:
    files = {"file": ("accounts.csv", accounts_csv.read_bytes(), "text/csv")}
    assert client.post("/audit", files=files).status_code == 401
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="key"' in page.text and "<script src" not in page.text and "http" not in page.text.split("<body>")[1]


def test_audit_upload_obeys_the_upload_limit(trained_run: Path, accounts_csv: Path) -> None:
    with service_client(trained_run, GIVETAKE_MAX_UPLOAD_MB="0.001") as c:
        files = {"file": ("accounts.csv", accounts_csv.read_bytes() * 3, "text/csv")}
        resp = c.post("/audit", files=files)
        assert resp.status_code == 413, resp.text


# ----------------------------------------------------------------------------------- real browser

POSTS = [
    "Our spring pottery course opens Monday, book your place now!",
    "What's the one kitchen tool you would never give up?",
    "@user Sorry about the delay, please DM us your order number and we'll chase it today.",
]


def _browser(download_dir: Path) -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or ""
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=download_dir)}",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))


def _need_browser() -> None:
    missing = [n for n, ok in (("chromium", CHROMIUM), ("chromedriver", DRIVER), ("selenium", HAVE_SELENIUM)) if not ok]
    if missing:
        reason = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)"
        if os.environ.get("GIVETAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.server
@pytest.mark.smoke
def test_the_page_in_headless_chromium(trained_run: Path, tmp_path: Path, accounts_csv: Path) -> None:
    _need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("GIVETAKE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with running_server(trained_run, tmp_path, GIVETAKE_API_KEY=KEY) as base:
        driver = _browser(tmp_path)
        try:
            wait = WebDriverWait(driver, 60)  # type: ignore[arg-type]
            driver.get(f"{base}/ui")  # type: ignore[attr-defined]
            find = driver.find_element  # type: ignore[attr-defined]
            # Without the key the page says what is missing.
            find(By.ID, "posts").send_keys("\n".join(POSTS))
            find(By.ID, "classify").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "API key"))
            find(By.ID, "key").send_keys(KEY)
            find(By.ID, "classify").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == 3)
            results = driver.find_elements(By.CSS_SELECTOR, "#results .result")  # type: ignore[attr-defined]
            assert [r.find_element(By.TAG_NAME, "p").text for r in results] == POSTS
            for r in results:
                assert len(r.find_elements(By.CSS_SELECTOR, ".bars .bar")) == 5  # a score bar per label
            assert find(By.ID, "error").text == ""
            driver.save_screenshot(str(shots / "ui-labels.png"))  # type: ignore[attr-defined]

            find(By.ID, "file").send_keys(str(accounts_csv))
            find(By.ID, "audit").click()
            frame = wait.until(ec.visibility_of_element_located((By.ID, "report")))
            wait.until(lambda d: "report for accounts.csv" in d.find_element(By.ID, "auditstate").text)
            driver.execute_script("arguments[0].scrollIntoView()", frame)  # type: ignore[attr-defined]
            driver.switch_to.frame(frame)  # type: ignore[attr-defined]
            svgs = driver.find_elements(By.TAG_NAME, "svg")  # type: ignore[attr-defined]
            assert len(svgs) >= 4, len(svgs)  # ranking + each account's charts
            assert all(s.size["width"] > 100 and s.size["height"] > 50 for s in svgs[:3])
            assert "Accounts ranked" in driver.page_source  # type: ignore[attr-defined]
            driver.switch_to.default_content()  # type: ignore[attr-defined]
            driver.save_screenshot(str(shots / "ui-audit.png"))  # type: ignore[attr-defined]
        finally:
            driver.quit()  # type: ignore[attr-defined]
    for name in ("ui-labels.png", "ui-audit.png"):
        assert (shots / name).stat().st_size > 10_000


# END
