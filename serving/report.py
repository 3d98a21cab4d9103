"""The feed audit as one self-contained HTML page: inline SVG charts, inline CSS, no script, no CDN.

The first screen answers "giving or taking?": the verdict in words and colour, the take share on a
scale with the rule's limit, and what the posts do, label by label. With several accounts it
opens on all of them side by side, ranked from most giving to most taking. Further down: each
account's timeline, its rule mix, examples, and how the numbers were corrected.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from givetake.serving.audit import pct

GIVE, TAKE, GREY, INK = "#1f8a70", "#d1495b", "#8a8f98", "#1d2330"
STATUS = {
    "giving": ("#1f8a70", "Giving"),
    "taking": ("#d1495b", "Taking"),
    "borderline": ("#c98c00", "Borderline"),
}
# Accounts with a section of their own in a multi-account report; the ranking and table list all.
DETAILED = 30
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"

CSS = f"""
body {{ font-family: {FONT}; color: {INK}; margin: 0; background: #f5f6f8; }}
main {{ max-width: 1100px; margin: 0 auto; padding: 20px 24px 40px; }}
header.top {{ display: flex; justify-content: space-between; align-items: baseline; flex-wrap: wrap;
  gap: 8px; margin-bottom: 14px; }}
header.top h1 {{ font-size: 20px; margin: 0; }}
header.top .meta {{ color: #5b6270; font-size: 13px; }}
section.card {{ background: #fff; border-radius: 10px; box-shadow: 0 1px 3px rgba(0,0,0,.08);
  padding: 18px 22px; margin-bottom: 18px; }}
.verdict {{ display: flex; gap: 18px; align-items: center; flex-wrap: wrap; }}
.badge {{ color: #fff; font-weight: 700; font-size: 26px; padding: 10px 18px; border-radius: 8px;
  letter-spacing: .5px; }}
.sentence {{ font-size: 18px; line-height: 1.45; flex: 1; min-width: 300px; }}
.kpis {{ display: flex; gap: 12px; flex-wrap: wrap; margin: 14px 0 4px; }}
.kpi {{ background: #f0f2f5; border-radius: 8px; padding: 8px 12px; min-width: 120px; }}
.kpi b {{ display: block; font-size: 20px; }}
.kpi span {{ font-size: 12px; color: #5b6270; }}
.charts {{ display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }}
.charts > div {{ flex: 1; min-width: 420px; }}
h2 {{ font-size: 19px; margin: 0 0 8px; }}
h3 {{ font-size: 15px; margin: 14px 0 6px; color: #39404d; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ text-align: left; padding: 5px 8px; border-bottom: 1px solid #e6e8ec; vertical-align: top; }}
th {{ color: #5b6270; font-weight: 600; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.examples {{ display: flex; gap: 18px; flex-wrap: wrap; }}
.examples > div {{ flex: 1; min-width: 320px; }}
.post {{ border-left: 4px solid {GREY}; background: #fafbfc; padding: 8px 10px; margin-bottom: 8px;
  border-radius: 4px; font-size: 13px; }}
.post p {{ margin: 0 0 6px; white-space: pre-wrap; word-break: break-word; }}
.bars {{ display: grid; grid-template-columns: 150px 1fr 40px; gap: 2px 6px; align-items: center;
  font-size: 11px; color: #5b6270; }}
.bar {{ background: #e6e8ec; height: 7px; border-radius: 4px; overflow: hidden; }}
.bar i {{ display: block; height: 100%; }}
.note {{ color: #5b6270; font-size: 12.5px; line-height: 1.5; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; }}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" font-family="{_e(FONT)}" font-size="12">'
        f"<title>{_e(title)}</title>{body}</svg>"
    )


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 12, fill: str = INK, weight: str = "") -> str:
    w = f' font-weight="{weight}"' if weight else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{w}>{_e(s)}</text>'


def _axis(
    x0: float, width: float, y_top: float, y_bottom: float, ticks: Sequence[float] = (0, 0.25, 0.5, 0.75, 1)
) -> str:
    out = []
    for t in ticks:
        x = x0 + t * width
        out.append(f'<line x1="{x:.1f}" y1="{y_top}" x2="{x:.1f}" y2="{y_bottom}" stroke="#e6e8ec"/>')
        out.append(_text(x, y_bottom + 14, pct(t), "middle", 11, "#5b6270"))
    return "".join(out)


def _interval(x0: float, width: float, y: float, low: float, high: float, color: str = INK) -> str:
    a, b = x0 + low * width, x0 + high * width
    return (
        f'<line x1="{a:.1f}" y1="{y}" x2="{b:.1f}" y2="{y}" stroke="{color}" stroke-width="1.6"/>'
        f'<line x1="{a:.1f}" y1="{y - 5}" x2="{a:.1f}" y2="{y + 5}" stroke="{color}" stroke-width="1.6"/>'
        f'<line x1="{b:.1f}" y1="{y - 5}" x2="{b:.1f}" y2="{y + 5}" stroke="{color}" stroke-width="1.6"/>'
    )


def gauge(take: dict[str, Any], limit: float, rule_title: str, status: str) -> str:
    """The take share on a 0-100% scale: within the limit green, beyond it red; interval and raw count."""
    w, h, x0, width = 560, 120, 20, 520
    y = 52
    color = STATUS[status][0]
    lx = x0 + limit * width
    body = [
        _text(x0, 16, "Share of posts that take (pitch or ask)", size=13, weight="600"),
        f'<rect x="{x0}" y="{y - 14}" width="{limit * width:.1f}" height="28" fill="{GIVE}" opacity=".16"/>',
        f'<rect x="{lx:.1f}" y="{y - 14}" width="{(1 - limit) * width:.1f}" height="28" fill="{TAKE}" opacity=".14"/>',
        _axis(x0, width, y - 14, y + 16),
        f'<line x1="{lx:.1f}" y1="{y - 20}" x2="{lx:.1f}" y2="{y + 16}" stroke="{INK}" stroke-dasharray="4 3"/>',
        _text(lx + 4, y - 18, f"limit {pct(limit)} ({rule_title})", size=11, fill="#39404d"),
        f'<rect x="{x0 + take["low"] * width:.1f}" y="{y - 6}" '
        f'width="{max((take["high"] - take["low"]) * width, 2):.1f}" height="12" rx="3" fill="{color}" opacity=".35"/>',
        f'<circle cx="{x0 + take["raw"] * width:.1f}" cy="{y}" r="5" fill="#fff" stroke="{INK}" stroke-width="1.5"/>',
        f'<circle cx="{x0 + take["share"] * width:.1f}" cy="{y}" r="7" fill="{color}" stroke="#fff" '
        'stroke-width="1.5"/>',
    ]
    ly = h - 14
    body += [
        f'<circle cx="{x0 + 6}" cy="{ly - 4}" r="6" fill="{color}"/>',
        _text(x0 + 16, ly, f"corrected {pct(take['share'])}", size=11),
        f'<rect x="{x0 + 130}" y="{ly - 9}" width="22" height="10" rx="3" fill="{color}" opacity=".35"/>',
        _text(x0 + 158, ly, f"95% interval {pct(take['low'])}-{pct(take['high'])}", size=11),
        f'<circle cx="{x0 + 330}" cy="{ly - 4}" r="5" fill="#fff" stroke="{INK}" stroke-width="1.5"/>',
        _text(x0 + 340, ly, f"raw count {pct(take['raw'])}", size=11),
    ]
    return _svg(w, h, "".join(body), f"take share {pct(take['share'])} against a limit of {pct(limit)}")


def label_bars(labels: dict[str, dict[str, Any]], sides: dict[str, str | None]) -> str:
    """What the posts do: one bar per label (corrected share), its interval and the raw count."""
    names = list(labels)
    row, top, x0, width = 30, 30, 150, 300
    h = top + row * len(names) + 48
    w = 590
    body = [_text(0, 16, "What the posts do (share of posts per label)", size=13, weight="600")]
    body.append(_axis(x0, width, top, top + row * len(names)))
    for i, n in enumerate(names):
        s = labels[n]
        y = top + i * row + row / 2
        color = TAKE if sides.get(n) == "take" else GIVE
        body.append(_text(x0 - 8, y + 4, n.replace("_", " "), "end", 12))
        body.append(
            f'<rect x="{x0}" y="{y - 8}" width="{max(s["share"] * width, 0.5):.1f}" height="16" rx="2" '
            f'fill="{color}" opacity=".85"/>'
        )
        body.append(_interval(x0, width, y, s["low"], s["high"]))
        body.append(
            f'<circle cx="{x0 + s["raw"] * width:.1f}" cy="{y}" r="4" fill="#fff" stroke="{INK}" stroke-width="1.3"/>'
        )
        body.append(_text(x0 + width + 10, y + 4, f"{pct(s['share'])}  ({s['count']} flagged)", size=11))
    ly = h - 12
    body += [
        f'<rect x="0" y="{ly - 9}" width="12" height="10" fill="{GIVE}"/>',
        _text(16, ly, "gives", size=11),
        f'<rect x="58" y="{ly - 9}" width="12" height="10" fill="{TAKE}"/>',
        _text(74, ly, "takes", size=11),
        _interval(130, 1, ly - 4, 0, 24),
        _text(162, ly, "95% interval", size=11),
        f'<circle cx="250" cy="{ly - 4}" r="4" fill="#fff" stroke="{INK}" stroke-width="1.3"/>',
        _text(258, ly, "raw count (before correction)", size=11),
    ]
    return _svg(w, h, "".join(body), "share of posts per label")


def timeline_chart(tl: dict[str, Any], limit: float) -> str:
    """Take share per week or month (line, interval band, limit) over the number of posts (bars)."""
    points = tl["points"]
    w, left, right = 1000, 52, 20
    top, share_h, gap, count_h = 34, 190, 34, 70
    plot_w = w - left - right
    h = top + share_h + gap + count_h + 46
    n = len(points)
    step = plot_w / max(n, 1)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def ys(v: float) -> float:
        return top + share_h * (1 - v)

    unit = tl["unit"]
    body = [_text(0, 16, f"Take share per {unit} (corrected, with 95% interval)", size=13, weight="600")]
    for t in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line x1="{left}" y1="{ys(t):.1f}" x2="{w - right}" y2="{ys(t):.1f}" stroke="#e6e8ec"/>')
        body.append(_text(left - 6, ys(t) + 4, pct(t), "end", 11, "#5b6270"))
    body.append(
        f'<line x1="{left}" y1="{ys(limit):.1f}" x2="{w - right}" y2="{ys(limit):.1f}" stroke="{INK}" '
        f'stroke-dasharray="5 4"/>'
    )
    body.append(_text(w - right, ys(limit) - 5, f"rule limit {pct(limit)}", "end", 11, "#39404d"))
    good = [(i, p) for i, p in enumerate(points) if p["enough"]]
    if good:
        band = [f"{x(i):.1f},{ys(p['high']):.1f}" for i, p in good] + [
            f"{x(i):.1f},{ys(p['low']):.1f}" for i, p in reversed(good)
        ]
        body.append(f'<polygon points="{" ".join(band)}" fill="{TAKE}" opacity=".16"/>')
        line = " ".join(f"{x(i):.1f},{ys(p['share']):.1f}" for i, p in good)
        body.append(f'<polyline points="{line}" fill="none" stroke="{TAKE}" stroke-width="2"/>')
    for i, p in enumerate(points):
        if p["enough"]:
            body.append(f'<circle cx="{x(i):.1f}" cy="{ys(p["share"]):.1f}" r="3.2" fill="{TAKE}"/>')
        else:
            body.append(f'<circle cx="{x(i):.1f}" cy="{ys(p["share"]):.1f}" r="3.2" fill="#fff" stroke="{GREY}"/>')
    # counts
    cy0 = top + share_h + gap
    most = max(p["posts"] for p in points) or 1
    body.append(_text(0, cy0 - 8, f"Posts per {unit} (dark: posts that take)", size=12, weight="600"))
    bw = max(min(step * 0.7, 40), 1.5)
    for i, p in enumerate(points):
        bh = count_h * p["posts"] / most
        th = count_h * p["take_count"] / most
        body.append(
            f'<rect x="{x(i) - bw / 2:.1f}" y="{cy0 + count_h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
            f'fill="#c9ced6"/>'
        )
        body.append(
            f'<rect x="{x(i) - bw / 2:.1f}" y="{cy0 + count_h - th:.1f}" width="{bw:.1f}" height="{th:.1f}" '
            f'fill="{TAKE}" opacity=".8"/>'
        )
    body.append(_text(left - 6, cy0 + 10, str(most), "end", 11, "#5b6270"))
    body.append(_text(left - 6, cy0 + count_h, "0", "end", 11, "#5b6270"))
    every = max(1, round(n / 10))
    for i, p in enumerate(points):
        if i % every == 0:
            body.append(
                _text(x(i), cy0 + count_h + 15, p["start"][:7] if unit == "month" else p["start"], "middle", 11)
            )
    ly = h - 8
    body += [
        f'<line x1="{left}" y1="{ly - 4}" x2="{left + 22}" y2="{ly - 4}" stroke="{TAKE}" stroke-width="2"/>',
        _text(left + 28, ly, "take share", size=11),
        f'<rect x="{left + 110}" y="{ly - 9}" width="22" height="10" fill="{TAKE}" opacity=".16"/>',
        _text(left + 138, ly, "95% interval", size=11),
        f'<circle cx="{left + 240}" cy="{ly - 4}" r="3.2" fill="#fff" stroke="{GREY}"/>',
        _text(left + 248, ly, f"fewer than 3 posts that {unit}", size=11),
    ]
    return _svg(w, h, "".join(body), f"take share per {unit}")


def ranking_chart(ranking: list[dict[str, Any]], limit: float, rule_title: str, cap: int = 40) -> str:
    """All accounts side by side: take share with interval, most giving first, the limit as a line."""
    rows = ranking[:cap]
    w, left, right, top, row = 1000, 250, 150, 40, 28
    width = w - left - right
    h = top + row * len(rows) + 44
    lx = left + limit * width
    body = [_text(0, 16, "Accounts ranked: share of posts that take (most giving first)", size=13, weight="600")]
    body.append(_axis(left, width, top - 6, top + row * len(rows)))
    body.append(
        f'<line x1="{lx:.1f}" y1="{top - 12}" x2="{lx:.1f}" y2="{top + row * len(rows)}" stroke="{INK}" '
        f'stroke-dasharray="5 4"/>'
    )
    body.append(_text(lx + 4, top - 14, f"limit {pct(limit)} ({rule_title})", size=11, fill="#39404d"))
    for i, r in enumerate(rows):
        y = top + i * row + row / 2
        color = STATUS[r["status"]][0]
        name = r["account"] if len(r["account"]) <= 32 else r["account"][:31] + "…"
        body.append(_text(left - 10, y + 4, name, "end", 12))
        body.append(
            f'<rect x="{left}" y="{y - 8}" width="{max(r["take"] * width, 0.5):.1f}" height="16" rx="2" '
            f'fill="{color}" opacity=".85"/>'
        )
        body.append(_interval(left, width, y, r["low"], r["high"]))
        body.append(
            _text(
                left + width + 10, y + 4, f"{pct(r['take'])} · {STATUS[r['status']][1]} · {r['posts']} posts", size=11
            )
        )
    ly = h - 10
    x = 0
    for color, word in STATUS.values():
        body.append(f'<rect x="{x}" y="{ly - 9}" width="12" height="10" fill="{color}"/>')
        body.append(_text(x + 16, ly, word, size=11))
        x += 100
    body.append(_interval(x, 1, ly - 4, 0, 24))
    body.append(_text(x + 30, ly, "95% interval", size=11))
    return _svg(w, h, "".join(body), "accounts ranked by take share")


def _kpis(acc: dict[str, Any]) -> str:
    period = acc["period"]
    span = f"{period['start'][:10]} to {period['end'][:10]}" if period["start"] else "no dates"
    bal = acc["balance"]
    items = [
        (f"{acc['posts']:,}", "posts scored"),
        (span, "period"),
        (pct(acc["buckets"]["take"]["share"]), "of posts take (pitch or ask)"),
        (pct(bal["give_part"]) if bal["give_part"] is not None else "n/a", "of what the posts do gives"),
    ]
    if "customers" in acc:
        items.append((pct(acc["customers"]["share"]), "answer customers"))
    if acc.get("unlabelled") is not None:
        items.append((pct(acc["unlabelled"]), "have no label (neither give nor take)"))
    return (
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for v, k in items)
        + "</div>"
    )


def _badge(status: str) -> str:
    color, word = STATUS[status]
    return f'<div class="badge" style="background:{color}">{word}</div>'


def _post(ex: dict[str, Any], sides: dict[str, str | None], color: str) -> str:
    text = ex["text"] if len(ex["text"]) <= 400 else ex["text"][:399] + "…"
    rows = []
    for n, v in sorted(ex["scores"].items(), key=lambda kv: -kv[1])[:3]:
        c = TAKE if sides.get(n) == "take" else GIVE
        rows.append(
            f"<span>{_e(n)}{' ✓' if n in ex['labels'] else ''}</span>"
            f'<div class="bar"><i style="width:{v * 100:.0f}%;background:{c}"></i></div><span>{v:.2f}</span>'
        )
    when = f" · {ex['time'][:10]}" if ex.get("time") else ""
    return (
        f'<div class="post" style="border-left-color:{color}"><p>{_e(text)}</p>'
        f'<div class="bars">{"".join(rows)}</div>'
        f'<div class="note">labels: {_e(", ".join(ex["labels"]) or "none")}{when}</div></div>'
    )


def _targets(acc: dict[str, Any]) -> str:
    rows = []
    for t in acc["targets"]:
        sign = "at most" if t["op"] == "max" else "at least"
        state = ("met" if t["met"] else "missed") + ("" if t["certain"] else " (within the interval)")
        rows.append(
            f"<tr><td>{_e(t['says'])}</td><td class='num'>{sign} {pct(t['target'])}</td>"
            f"<td class='num'>{pct(t['share'])}</td><td class='num'>{pct(t['low'])}-{pct(t['high'])}</td>"
            f"<td>{_e(state)}</td></tr>"
        )
    return (
        "<table><tr><th>the rule says</th><th class='num'>target</th><th class='num'>this feed</th>"
        "<th class='num'>95% interval</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def account_section(acc: dict[str, Any], report: dict[str, Any], hero: bool) -> str:
    """One account: verdict, scale, label bars (the first screen when it is the only account), then
    the rule mix, timeline, customers and examples."""
    sides = report["sides"]
    rule = report["rule"]
    v = acc["verdict"]
    parts = [
        f'<section class="card" id="acc-{_e(acc["account"])}">',
        f"<h2>{_e(acc['account'])}</h2>" if not hero else "",
        f'<div class="verdict">{_badge(v["status"])}<div class="sentence">{_e(v["sentence"])}</div></div>',
        _kpis(acc),
        '<div class="charts"><div>',
        gauge(acc["buckets"]["take"], v["limit"], rule["title"], v["status"]),
        "</div><div>",
        label_bars(acc["labels"], sides),
        "</div></div>",
        "</section>",
        '<section class="card">',
        f"<h3>Against {_e(rule['title'])}: {_e(rule['summary'])}</h3>",
        _targets(acc),
    ]
    if "customers" in acc:
        parts.append(f"<h3>Customers</h3><p>{_e(acc['customers']['sentence'])}</p>")
    if acc["timeline"]:
        parts.append(timeline_chart(acc["timeline"], v["limit"]))
        if acc["timeline"]["undated"]:
            parts.append(
                f"<p class='note'>{acc['timeline']['undated']} posts without a readable time "
                "are left out of the timeline.</p>"
            )
    else:
        parts.append("<p class='note'>No timeline: the posts have no readable time (pass --time-column).</p>")
    parts.append('<div class="examples"><div><h3>Posts that take most</h3>')
    parts += [_post(ex, sides, TAKE) for ex in acc["examples"]["take"]] or ["<p class='note'>none</p>"]
    parts.append("</div><div><h3>Best giving posts</h3>")
    parts += [_post(ex, sides, GIVE) for ex in acc["examples"]["give"]] or ["<p class='note'>none</p>"]
    parts.append("</div></div></section>")
    return "".join(parts)


def _overview(report: dict[str, Any]) -> str:
    ranking = report["ranking"]
    rule = report["rule"]
    counts = {s: sum(r["status"] == s for r in ranking) for s in STATUS}
    limit = rule["targets"][0]["value"]
    sentence = (
        f"{len(ranking)} accounts against {rule['title']} (at most {pct(limit)} of posts take): "
        f"{counts['taking']} taking, {counts['borderline']} borderline, {counts['giving']} giving."
    )
    rows = []
    by_name = {a["account"]: a for a in report["accounts"]}
    detailed = {a["account"] for a in sorted(report["accounts"], key=lambda a: -a["posts"])[:DETAILED]}
    for r in ranking:
        a = by_name[r["account"]]
        cust = pct(a["customers"]["share"]) if "customers" in a else "n/a"
        give = a["balance"]["give_part"]
        name = _e(r["account"])
        cell = f"<a href='#acc-{name}'>{name}</a>" if r["account"] in detailed else name
        rows.append(
            f"<tr><td>{cell}</td>"
            f"<td class='num'>{r['posts']:,}</td><td class='num'>{pct(r['take'])}</td>"
            f"<td class='num'>{pct(r['low'])}-{pct(r['high'])}</td>"
            f"<td class='num'>{pct(give) if give is not None else 'n/a'}</td><td class='num'>{cust}</td>"
            f"<td><span class='dot' style='background:{STATUS[r['status']][0]}'></span>"
            f"{STATUS[r['status']][1]}</td></tr>"
        )
    more = (
        f"<p class='note'>The chart shows the first 40 of {len(ranking)}; the table has all.</p>"
        if len(ranking) > 40
        else ""
    )
    return (
        f'<section class="card"><div class="sentence">{_e(sentence)}</div>'
        f"{ranking_chart(ranking, limit, rule['title'])}{more}</section>"
        '<section class="card"><h3>Side by side</h3><table><tr><th>account</th><th class="num">posts</th>'
        '<th class="num">take share</th><th class="num">95% interval</th><th class="num">gives (of what posts do)</th>'
        '<th class="num">answers customers</th><th>verdict</th></tr>' + "".join(rows) + "</table></section>"
    )


def _sample_bias(counts: dict[str, Any]) -> float:
    """A labelled sample's count bias: (missed - false alarms) / posts."""
    rows = counts["tp"] + counts["fp"] + counts["fn"] + counts["tn"]
    return float((counts["fn"] - counts["fp"]) / max(rows, 1))


def _method(report: dict[str, Any]) -> str:
    cb = report.get("count_bias") or {}
    er = report.get("error_rates")
    read = report.get("input", {})
    sample = er if er and er.get("source") != "validation" else None
    first = report["accounts"][0]["labels"] if report.get("accounts") else {}
    rows = []
    for n in report.get("labels", []):
        ref = (cb.get("per_label") or {}).get(n)
        mine = (sample or {}).get("per_label", {}).get(n) if sample else None
        used = first.get(n, {}).get("bias")
        rows.append(
            f"<tr><td>{_e(n)}</td>"
            + (
                f"<td class='num'>{ref['mean']:+.1%}</td><td class='num'>{ref['spread']:.1%}</td>"
                if ref
                else "<td class='num'>-</td><td class='num'>-</td>"
            )
            + (f"<td class='num'>{_sample_bias(mine):+.1%}</td>" if mine else "")
            + (f"<td class='num'>{used:+.1%}</td>" if used is not None else "<td class='num'>not corrected</td>")
            + "</tr>"
        )
    mine_head = "<th class='num'>your sample's bias</th>" if sample else ""
    how = (
        "<p class='note'>A count is off by the model's missed posts minus its false alarms, and by how much "
        "differs from feed to feed. Each share is the count plus the label's bias (added to the count, below); "
        f"the bias comes from the {_e(report.get('correction', ''))}. "
        "The 95% interval is a prediction interval for this feed: the spread of that bias between feeds "
        "(or what your labelled sample leaves of it) plus the noise of "
        "this feed's own posts, so short feeds get wide intervals. A bucket's share (take = pitch + ask) is the "
        "sum of its labels' shares. Label a few hundred of your own posts and run <code>givetake evaluate</code> "
        "to correct for your feed rather than for the average one.</p>"
        "<table><tr><th>label</th><th class='num'>mean bias on real posts</th><th class='num'>spread between feeds</th>"
        f"{mine_head}<th class='num'>added to the count</th></tr>" + "".join(rows) + "</table>"
    )
    skipped = ""
    if read.get("skipped"):
        skipped = (
            f"<p class='note'>{read['skipped']} rows without usable text were skipped, "
            f"e.g. {_e('; '.join(read['skipped_examples'][:3]))}.</p>"
        )
    return f'<section class="card"><h3>How these numbers were made</h3>{how}{skipped}</section>'


def render_html(report: dict[str, Any]) -> str:
    """The whole report page."""
    accounts = report["accounts"]
    model = report.get("model", {})
    meta = (
        f"{_e(', '.join(report.get('input', {}).get('files', [])))} · model {_e(model.get('name', '?'))} · "
        f"rule {_e(report['rule']['title'])} · made {_e(report.get('made', ''))}"
    )
    title = "Giving or taking?"
    if len(accounts) == 1:
        body = account_section(accounts[0], report, hero=True)
        title += f" {accounts[0]['account']}"
    else:
        # Each account's own section, most posts first, up to DETAILED (report.json has them all).
        shown = sorted(accounts, key=lambda a: -a["posts"])[:DETAILED]
        order = {r["account"]: i for i, r in enumerate(report["ranking"])}
        body = _overview(report) + "".join(
            account_section(a, report, hero=False) for a in sorted(shown, key=lambda a: order[a["account"]])
        )
        if len(accounts) > DETAILED:
            body += (
                f"<p class='note'>Details for the {DETAILED} accounts with most posts; report.json has all "
                f"{len(accounts)}.</p>"
            )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · givetake feed audit</title><style>{CSS}</style></head><body><main>"
        f"<header class='top'><h1>{_e(title)}</h1><div class='meta'>{meta}</div></header>"
        f"{body}{_method(report)}</main></body></html>"
    )
