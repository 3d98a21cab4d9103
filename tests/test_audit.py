"""The feed audit: its arithmetic on hand-made data with known answers, and the report on the tiny model."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core.count_bias import CountBias, CountBiasReference, feed_bias, load_reference, measure_count_bias
from givetake.core.error_rates import ErrorRates, LabelErrors, confusion_counts, load_error_rates, rates_from_metrics
from givetake.errors import DataError
from givetake.serving.audit import (
    RULES,
    AccountPosts,
    audit,
    corrected_share,
    feed_biases,
    interval,
    label_shares,
    share_draws,
    timeline,
    verdict,
)
from givetake.serving.feed import parse_time, read_posts
from tests.helpers import AUDIT_POSTS as POSTS
from tests.helpers import check_report_html, read_seed_rows, write_accounts_csv

LABELS = ["pitch", "ask", "helpful_share", "conversation_starter", "customer_service_reply"]
SIDES = {"pitch": "take", "ask": "take", "helpful_share": "give", "conversation_starter": "give"}
SIDES["customer_service_reply"] = "give"


def reference(mean: float = 0.0, spread: float = 0.02, feeds: int = 10) -> CountBiasReference:
    """A count-bias reference with the same bias for every label."""
    b = CountBias(mean=mean, spread=spread, mean_se=0.005, post_variance=0.08, feeds=feeds, posts=1000)
    return CountBiasReference("test reference", {n: b for n in LABELS})


# ------------------------------------------------------------------------------------- arithmetic


def test_feed_bias_weighs_a_labelled_sample_against_the_reference() -> None:
    prior = reference(mean=0.02, spread=0.03).labels["pitch"]
    alone = feed_bias(prior, None)
    assert alone.corrected and alone.mean == pytest.approx(0.02)
    assert alone.variance == pytest.approx(0.03**2 + 0.005**2)
    # A big sample of the user's own posts (bias +0.10: 1000 missed, none flagged wrongly) wins ...
    big = feed_bias(prior, (0, 1000, 10_000))
    assert big.mean == pytest.approx(0.10, abs=0.005) and big.variance < alone.variance / 10
    # ... a small one (one miss in ten posts, also +0.10) only nudges the reference.
    small = feed_bias(prior, (0, 1, 10))
    assert 0.02 < small.mean < 0.05
    # A label the reference does not know: the sample alone, or, without one, no correction.
    assert feed_bias(None, (0, 1000, 10_000)).mean == pytest.approx(0.10)
    assert not feed_bias(None, None).corrected


def test_validation_rates_do_not_move_the_reference_and_an_evaluation_does() -> None:
    counts = {n: LabelErrors(tp=100, fp=0, fn=100, tn=800) for n in LABELS}  # bias +0.10 in 1000 posts
    ref = reference(mean=0.0, spread=0.05)
    from_validation = feed_biases(LABELS, ErrorRates("validation", "v", counts), ref)
    from_users_posts = feed_biases(LABELS, ErrorRates("mine", "m", counts), ref)
    assert from_validation["pitch"].mean == 0.0
    assert from_users_posts["pitch"].mean == pytest.approx(0.10, abs=0.01)
    unknown = feed_biases([*LABELS, "complaint"], None, ref)["complaint"]
    assert not unknown.corrected


def test_shares_count_posts_per_label_and_a_zero_bias_changes_nothing() -> None:
    pred = np.zeros((20, 5), dtype=np.int8)
    pred[:5, 0] = 1  # 5 pitch
    pred[5:7, 1] = 1  # 2 ask
    pred[:10, 2] = 1  # 10 helpful_share (rows 0-4 pitch too)
    shares, _ = label_shares(pred, LABELS, feed_biases(LABELS, None, reference()), np.random.default_rng(0))
    assert [shares[n]["count"] for n in LABELS] == [5, 2, 10, 0, 0]
    assert shares["pitch"]["raw"] == 0.25 and shares["pitch"]["share"] == pytest.approx(0.25)
    assert shares["helpful_share"]["share"] == pytest.approx(0.5)
    assert shares["pitch"]["low"] < 0.25 < shares["pitch"]["high"]


def test_correction_adds_the_bias_and_clips_at_zero() -> None:
    biases = feed_biases(LABELS, None, reference(mean=-0.05))
    pred = np.zeros((1000, 5), dtype=np.int8)
    pred[:275, 0] = 1
    pred[:20, 1] = 1
    shares, _ = label_shares(pred, LABELS, biases, np.random.default_rng(0))
    assert shares["pitch"]["raw"] == pytest.approx(0.275)
    assert shares["pitch"]["share"] == pytest.approx(0.225)
    assert shares["ask"]["share"] == 0.0 and shares["ask"]["low"] == 0.0  # counted 2% with a -5% bias
    assert corrected_share(3, 10, None) == pytest.approx(0.3)


def simulated_feed(rng: np.random.Generator, bias: float, n: int, share: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and flags of ``n`` posts whose expected count bias (labelled - counted) is ``bias``."""
    fp_rate = 0.06
    fn_rate = float(np.clip((bias + (1 - share) * fp_rate) / share, 0, 1))
    truth = rng.random(n) < share
    flags = np.where(truth, rng.random(n) >= fn_rate, rng.random(n) < fp_rate)
    return truth.astype(int), flags.astype(int)


def measured(feeds: list[tuple[np.ndarray, np.ndarray]]) -> CountBiasReference:
    """The count bias of ``pitch`` measured on simulated feeds (labels, flags), one source each."""
    return measure_count_bias(
        np.concatenate([t for t, _ in feeds])[:, None],
        np.concatenate([p for _, p in feeds])[:, None],
        [f"f{i}" for i, (t, _) in enumerate(feeds) for _ in range(len(t))],
        ["pitch"],
        "sim",
    )


def test_measured_bias_recovers_the_mean_and_the_spread_between_feeds() -> None:
    rng = np.random.default_rng(1)
    b = measured([simulated_feed(rng, rng.normal(0.03, 0.02), 400) for _ in range(40)]).labels["pitch"]
    assert b.mean == pytest.approx(0.03, abs=0.01)
    assert b.spread == pytest.approx(0.02, abs=0.01)
    assert b.feeds == 40 and b.posts == 16_000
    # Identical feeds: no spread between them beyond their posts' noise.
    same = [simulated_feed(rng, 0.03, 400) for _ in range(40)]
    flat = measured(same)
    assert flat.labels["pitch"].spread < 0.012  # the 99th percentile over seeds is 0.011


def test_interval_covers_the_true_share_about_95_percent_of_the_time() -> None:
    """A reference measured on 10 simulated sources; new feeds whose bias comes from the same spread."""
    rng = np.random.default_rng(42)
    mean, spread = 0.03, 0.02
    feeds = [simulated_feed(rng, rng.normal(mean, spread), 150) for _ in range(10)]
    ref = measured(feeds)
    bias = feed_biases(["pitch"], None, ref)["pitch"]
    covered, raw_err, corrected_err, sims = 0, [], [], 300
    for _ in range(sims):
        truth, flags = simulated_feed(rng, rng.normal(mean, spread), 200)
        count, true_share = int(flags.sum()), float(truth.mean())
        low, high = interval(share_draws(count, len(flags), bias, rng, draws=1500))
        covered += low <= true_share <= high
        raw_err.append(count / len(flags) - true_share)
        corrected_err.append(corrected_share(count, len(flags), bias) - true_share)
    coverage = covered / sims
    assert 0.90 <= coverage <= 0.995, coverage
    # The raw count is biased (about -3 points here); the corrected share is not.
    assert abs(np.mean(corrected_err)) < abs(np.mean(raw_err))
    assert abs(np.mean(corrected_err)) < 0.01


def test_the_shipped_reference_knows_every_label_of_the_schema() -> None:
    ref = load_reference()
    assert set(ref.labels) == set(LABELS)
    assert all(b.feeds >= 3 and b.posts > 0 and b.spread >= 0 for b in ref.labels.values())
    assert "real posts" in ref.description


def test_verdict_is_taking_giving_or_borderline_by_where_the_interval_lies() -> None:
    rule = RULES["80-20"]
    taking = verdict({"share": 0.5, "low": 0.4, "high": 0.6, "raw": 0.5}, rule, "pitch or ask")
    giving = verdict({"share": 0.1, "low": 0.05, "high": 0.15, "raw": 0.1}, rule, "pitch or ask")
    border = verdict({"share": 0.22, "low": 0.15, "high": 0.3, "raw": 0.2}, rule, "pitch or ask")
    assert (taking["status"], giving["status"], border["status"]) == ("taking", "giving", "borderline")
    assert taking["sentence"].startswith("Taking. 50% of posts pitch or ask (95% interval 40%-60%)")
    assert "2.5 times the limit" in taking["sentence"]
    assert "best estimate is over it" in border["sentence"]


def _account(name: str, pred: np.ndarray, times: list[datetime | None] | None = None) -> AccountPosts:
    n = len(pred)
    return AccountPosts(
        name=name,
        texts=[f"{name} post {i}" for i in range(n)],
        times=times or [None] * n,
        predicted=pred.astype(np.int8),
        scores=pred.astype(float) * 0.9 + 0.05,
    )


def test_audit_ranks_accounts_and_checks_the_rule_of_thirds() -> None:
    seller = np.zeros((30, 5))
    seller[:24, 0] = 1  # 80% pitch
    seller[24:, 2] = 1
    helper = np.zeros((30, 5))
    helper[:3, 1] = 1  # 10% ask
    helper[3:15, 2] = 1  # 40% share
    helper[15:27, 3] = 1  # 40% conversation
    accounts = [_account("seller", seller), _account("helper", helper)]
    report = audit(accounts, LABELS, SIDES, None, "thirds", reference=reference(mean=0.0))
    assert [r["account"] for r in report["ranking"]] == ["helper", "seller"]
    by = {a["account"]: a for a in report["accounts"]}
    assert by["seller"]["verdict"]["status"] == "taking"
    assert by["helper"]["buckets"]["take"]["share"] == pytest.approx(0.1)
    assert by["helper"]["buckets"]["conversation"]["share"] == pytest.approx(0.4)
    met = {t["bucket"]: t["met"] for t in by["helper"]["targets"]}
    assert met == {"take": True, "share": True, "conversation": True}
    assert by["seller"]["balance"]["give_part"] == pytest.approx(0.2)
    # Examples: the seller's taking posts, and giving posts that take nothing.
    assert len(by["seller"]["examples"]["take"]) == 5
    assert all("pitch" in ex["labels"] for ex in by["seller"]["examples"]["take"])
    assert all(ex["labels"] == ["helpful_share"] for ex in by["seller"]["examples"]["give"])
    json.dumps(report, allow_nan=False)  # strict JSON, no NaN


def test_timeline_groups_by_week_with_counts() -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=UTC)  # a Monday
    times: list[datetime | None] = [start + timedelta(days=d) for d in (0, 1, 2, 3, 7, 8, 9, 10)] + [None]
    pred = np.zeros((9, 5))
    pred[[0, 1, 2, 3], 0] = 1  # first week all pitch
    biases = feed_biases(LABELS, None, reference(mean=0.0))
    tl = timeline(_account("a", pred, times), LABELS, ["pitch", "ask"], biases, np.random.default_rng(0))
    assert tl is not None and tl["unit"] == "week" and tl["undated"] == 1
    assert [(p["start"], p["posts"], p["take_count"]) for p in tl["points"]] == [
        ("2024-03-04", 4, 4),
        ("2024-03-11", 4, 0),
    ]
    assert tl["points"][0]["share"] == pytest.approx(1.0) and tl["points"][1]["share"] == 0.0


# ------------------------------------------------------------------------------------- error rates


def test_confusion_counts_and_rates_from_older_metrics() -> None:
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    p = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    counts = confusion_counts(y, p, ["a", "b"])
    assert counts == {"a": {"tp": 1, "fp": 1, "fn": 1, "tn": 1}, "b": {"tp": 1, "fp": 0, "fn": 1, "tn": 2}}
    # Metrics saved before the counts were recorded: worked back from precision, recall, support, rows.
    old = {"rows": 1000, "per_label": {"a": {"precision": 0.8, "recall": 0.9, "support": 200}}}
    e = rates_from_metrics(old, ["a"], "validation", "x").labels["a"]
    assert (e.tp, e.fp, e.fn, e.tn) == (180, 45, 20, 755)


def test_load_error_rates_prefers_the_users_own_evaluation(tmp_path: Path) -> None:
    block = {"rows": 10, "per_label": {"a": {"tp": 3, "fp": 1, "fn": 1, "tn": 5}}}
    metrics = {"validation": {"rows": 100, "per_label": {"a": {"tp": 30, "fp": 5, "fn": 5, "tn": 60}}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert load_error_rates(tmp_path, ["a"]).source == "validation"
    metrics["evaluations"] = {"mine": block}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    got = load_error_rates(tmp_path, ["a"])
    assert got.source == "mine" and got.labels["a"].tp == 3 and "labelled sample" not in got.description
    assert load_error_rates(tmp_path, ["a"], "validation").labels["a"].tp == 30
    with pytest.raises(DataError, match="no error rates named 'other'"):
        load_error_rates(tmp_path, ["a"], "other")


# ------------------------------------------------------------------------------------------- input


def test_parse_time_reads_the_formats_exports_use() -> None:
    want = datetime(2018, 10, 10, 20, 19, 24, tzinfo=UTC)
    assert parse_time("Wed Oct 10 20:19:24 +0000 2018") == want  # X archive
    assert parse_time("2018-10-10 20:19:24") == want  # LinkedIn Shares.csv, assumed UTC
    assert parse_time("2018-10-10T22:19:24+02:00") == want
    assert parse_time(want.timestamp()) == want and parse_time(str(int(want.timestamp() * 1000))) == want
    assert parse_time("yesterday") is None and parse_time("") is None


class _FakeScorer:
    """Labels a post by keywords: 'buy' pitches, 'tip' shares. Counts what it was asked to score."""

    labels = LABELS

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        self.seen += texts
        out = []
        for t in texts:
            scores = dict.fromkeys(LABELS, 0.05)
            scores["pitch"] = 0.9 if "buy" in t else 0.05
            scores["helpful_share"] = 0.9 if "tip" in t else 0.05
            out.append({"labels": [n for n, s in scores.items() if s > 0.5], "scores": scores, "truncated": False})
        return out


def test_read_posts_splits_accounts_and_keeps_existing_scores(tmp_path: Path) -> None:
    src = tmp_path / "feed.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["username", "date", "text"])
        w.writerows([["shop", "2024-01-01", "buy our mugs"], ["shop", "2024-01-02", "a tip on glazes"]])
        w.writerows([["fan", "2024-01-03", "tip: wedge clay first"], ["fan", "2024-01-04", "   "]])
    scorer = _FakeScorer()
    accounts, summary = read_posts([src], scorer, progress=False)
    assert [a.name for a in accounts] == ["shop", "fan"]
    assert summary.rows == 4 and summary.skipped == 1 and summary.scored == 3
    assert accounts[0].predicted[:, 0].tolist() == [1, 0] and accounts[0].times[0] == datetime(2024, 1, 1, tzinfo=UTC)
    # An already scored file is not scored again: its labels column is used as it is.
    scored = tmp_path / "scored.jsonl"
    rows = [{"text": "anything", "labels": ["ask"], **{f"score_{n}": 0.1 for n in LABELS}}]
    scored.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    scorer = _FakeScorer()
    accounts, summary = read_posts([scored], scorer, progress=False)
    assert scorer.seen == [] and summary.prescored == 1
    assert accounts[0].predicted[0].tolist() == [0, 1, 0, 0, 0] and accounts[0].name == "scored.jsonl"
    with pytest.raises(DataError, match="no author column 'who'"):
        read_posts([src], _FakeScorer(), author_column="who", progress=False)


def test_read_posts_names_uploads_by_their_own_name(tmp_path: Path) -> None:
    saved = tmp_path / "tmpab12cd34feed.csv"
    saved.write_text("text\nbuy now\n")
    accounts, summary = read_posts([saved], _FakeScorer(), progress=False, names=["feed.csv"])
    assert accounts[0].name == "feed.csv" and summary.files == ["feed.csv"]


# ------------------------------------------------------------------------------------------- report


def _write_tweets_js(path: Path, n: int = 40) -> None:
    start = datetime(2023, 5, 1, tzinfo=UTC)
    tweets = [
        {
            "tweet": {
                "id_str": str(1000 + i),
                "full_text": f"{POSTS[i % 5]} #{i}",
                "created_at": (start + timedelta(days=3 * i)).strftime("%a %b %d %H:%M:%S +0000 %Y"),
            }
        }
        for i in range(n)
    ]
    path.write_text("window.YTD.tweets.part0 = " + json.dumps(tweets, indent=1))


def test_audit_command_on_the_tiny_model(trained_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "accounts.csv"
    write_accounts_csv(src)
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["audit", str(src), "-o", str(out), "--model", str(trained_run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    page = out.read_text()
    check_report_html(page)
    report = json.loads((out.parent / "report.json").read_text())
    assert {a["account"] for a in report["accounts"]} == {"studio", "library", "helpdesk"}
    assert [a["posts"] for a in report["accounts"]] == [20, 20, 20]
    assert len(report["ranking"]) == 3 and report["rule"]["name"] == "80-20"
    assert report["error_rates"]["source"] == "validation"
    assert report["correction"].startswith("count bias on real posts (measured for the default recipe")
    assert "updated with" not in report["correction"] and "your sample" not in page
    for acc in report["accounts"]:
        assert acc["verdict"]["status"] in ("giving", "taking", "borderline")
        assert acc["verdict"]["sentence"] in page
        assert 0 <= acc["buckets"]["take"]["low"] <= acc["buckets"]["take"]["high"] <= 1
        assert acc["timeline"]["unit"] == "week" and sum(p["posts"] for p in acc["timeline"]["points"]) == 20
    assert "Accounts ranked" in page


def test_audit_command_on_an_x_archive_with_the_rule_of_thirds(trained_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "tweets.js"
    _write_tweets_js(src)
    out = tmp_path / "x.html"
    result = CliRunner().invoke(
        app, ["audit", str(src), "-o", str(out), "--model", str(trained_run), "--rule", "thirds"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    check_report_html(out.read_text())
    report = json.loads((tmp_path / "report.json").read_text())
    (acc,) = report["accounts"]
    assert acc["posts"] == 40 and acc["period"]["start"].startswith("2023-05-01")
    assert [t["bucket"] for t in acc["targets"]] == ["take", "share", "conversation"]


def test_audit_command_refuses_bad_options_in_one_line(trained_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    write_accounts_csv(src)
    for args, message in [
        (["--rule", "90-10"], "--rule '90-10': choose one of 80-20, thirds, 5-3-2"),
        (["--author-column", "who"], "no author column 'who'"),
        (["-o", str(tmp_path / "r.pdf")], "name the report .html"),
    ]:
        result = CliRunner().invoke(app, ["audit", str(src), "--model", str(trained_run), *args])
        assert result.exit_code != 0
        assert message in str(result.exception) + result.output


def test_givetake_evaluate_records_the_rates_the_audit_uses(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"  # a copy: evaluating records into the run, which other tests share
    shutil.copytree(trained_run, run)
    mine = tmp_path / "my_posts.jsonl"
    mine.write_text("".join(json.dumps(r) + "\n" for r in read_seed_rows(per_file=8)))
    result = CliRunner().invoke(app, ["evaluate", "--model", str(run), "--data", str(mine)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((run / "metrics.json").read_text())
    recorded = metrics["evaluations"]["my_posts"]["per_label"]["pitch"]
    assert {"tp", "fp", "fn", "tn"} <= set(recorded)
    assert {"tp", "fp", "fn", "tn"} <= set(metrics["validation"]["per_label"]["pitch"])  # recorded at training
    rates = load_error_rates(run, LABELS)
    assert rates.source == "my_posts" and "my_posts" in rates.description
    assert rates.labels["pitch"].tp == recorded["tp"]
    # The audit now corrects with the reference updated by that sample, and says so.
    src = tmp_path / "accounts.csv"
    write_accounts_csv(src)
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["audit", str(src), "-o", str(out), "--model", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out.parent / "report.json").read_text())
    assert "updated with givetake evaluate on 'my_posts'" in report["correction"]
    assert "your sample's bias" in out.read_text()
    # A store model keeps its metrics untouched: its eval/<name>/ report is found instead.
    store_like = tmp_path / "store_model"
    (store_like / "eval" / "mine").mkdir(parents=True)
    (store_like / "eval" / "validation").mkdir(parents=True)
    (store_like / "metrics.json").write_text(json.dumps({"validation": metrics["validation"]}))
    (store_like / "eval" / "mine" / "eval_results.json").write_text(json.dumps(metrics["evaluations"]["my_posts"]))
    assert load_error_rates(store_like, LABELS).source == "mine"


def test_read_posts_knows_a_linkedin_export_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shares = tmp_path / "Shares.csv"
    with shares.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Date", "ShareLink", "ShareCommentary", "SharedUrl", "MediaUrl", "Visibility"])
        w.writerow(["2023-02-01 09:30:00", "https://example.org/1", "buy our new course", "", "", "MEMBER_NETWORK"])
        w.writerow(["2023-02-08 10:00:00", "https://example.org/2", "a tip on writing", "", "", "MEMBER_NETWORK"])
    (acc,), summary = read_posts([shares], _FakeScorer(), progress=False)
    assert acc.name == "Shares.csv" and acc.texts == ["buy our new course", "a tip on writing"]
    assert acc.times == [datetime(2023, 2, 1, 9, 30, tzinfo=UTC), datetime(2023, 2, 8, 10, tzinfo=UTC)]
    assert acc.predicted[:, [0, 2]].tolist() == [[1, 0], [0, 1]]
    table = pa.table({"content": ["buy now", "tip: rest"], "handle": ["a", "b"], "timestamp": [1700000000, 1700086400]})
    pq.write_table(table, tmp_path / "posts.parquet")
    accounts, _ = read_posts([tmp_path / "posts.parquet"], _FakeScorer(), progress=False)
    assert [(a.name, a.texts, a.times[0].day) for a in accounts] == [("a", ["buy now"], 14), ("b", ["tip: rest"], 15)]
