"""The feed audit on real posts: a 500-post X archive and a 3-account CSV, with first-screen screenshots.

Builds both inputs at run time from ``../shared/data/raw`` into a temp folder (the posts are never
copied into the project): a ``tweets.js`` of 500 posts of one brand account (the Adobe brand-tweet
set) and a CSV of three accounts (a retailer and a charity from the same set, and a support desk
from TWCS). Runs ``givetake audit`` on each and screenshots the report's first screen (1280 x 900,
headless Chromium) into ``docs/img/audit-x-archive.png`` and ``docs/img/audit-accounts.png``. The
first screen shows the verdict and charts, not the example posts further down.

    python bench/audit_demo.py --model givetake:latest [--out /tmp/audit-demo]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT.parent / "shared" / "data" / "raw"
IMG = ROOT / "docs" / "img"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def brand_rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for name in ("behaviour_simulation_test_company.csv", "behaviour_simulation_test_time.csv"):
        with (RAW / "adobe_brand_tweets" / name).open(encoding="utf-8", newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def build_inputs(out: Path) -> tuple[Path, Path]:
    rows = brand_rows()
    rng = random.Random(7)
    picked = sorted(rng.sample([r for r in rows if r["username"] == "BBCSport"], 500), key=lambda r: r["date"])
    tweets = [
        {
            "tweet": {
                "id_str": str(10**17 + i),
                "full_text": r["content"],
                "created_at": datetime.fromisoformat(r["date"]).strftime("%a %b %d %H:%M:%S +0000 %Y"),
            }
        }
        for i, r in enumerate(picked)
    ]
    archive = out / "BBCSport" / "data" / "tweets.js"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_text("window.YTD.tweets.part0 = " + json.dumps(tweets, indent=1), encoding="utf-8")
    accounts = out / "accounts.csv"
    with accounts.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["author", "created_at", "text"])
        for r in rows:
            if r["username"] in ("chaptersindigo", "UNICEF"):
                w.writerow([r["username"], r["date"], r["content"]])
        with (RAW / "twcs_random5k" / "twcs_small.csv").open(encoding="utf-8", newline="") as src:
            for r in csv.DictReader(src):
                if r["author_id"] == "AmazonHelp":
                    w.writerow(["AmazonHelp", r["created_at"], r["text"]])
    return archive, accounts


def screenshot(page: Path, png: Path, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs chromium (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900", f"--screenshot={png}"]
        + [page.as_uri()],
        check=True,
        capture_output=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="givetake:latest")
    ap.add_argument("--out", type=Path, default=None, help="where inputs and reports go (default: a temp folder)")
    args = ap.parse_args()
    if not RAW.is_dir():
        sys.exit(f"skipped: {RAW} not found (the real posts live in ../shared, beside the project)")
    out = args.out or Path(tempfile.mkdtemp(prefix="audit-demo-"))
    archive, accounts = build_inputs(out)
    givetake = [sys.executable, "-m", "givetake.cli"]
    for src, name in ((archive, "audit-x-archive"), (accounts, "audit-accounts")):
        report = out / name / "report.html"
        subprocess.run([*givetake, "audit", str(src), "-o", str(report), "--model", args.model], check=True)
        screenshot(report, IMG / f"{name}.png", out / "chromium-profile")
        print(f"{name}: {report} -> {IMG / (name + '.png')}")


if __name__ == "__main__":
    main()
