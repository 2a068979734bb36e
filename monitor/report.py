"""A self-contained HTML report of one alert (images inline, the timeline an inline SVG, no scripts, no external
requests): what a person attaches to a ticket, and what a third party needs to re-check the scores."""

from __future__ import annotations

import base64
import datetime
import html

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#111;background:#fff}
main{max-width:60rem;margin:0 auto;padding:1rem 1.2rem}h1{font-size:1.35rem;margin:.4rem 0}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{width:13rem;color:#444;font-weight:600}.crops{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.7rem}
figure{margin:0}figure img{width:100%;border-radius:.3rem;display:block}figcaption{font-size:.82rem;color:#333}
.manipulated{color:#b91c1c;font-weight:700}.suspicious{color:#b45309;font-weight:700}.authentic{color:#15803d}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}pre{background:#f4f4f5;padding:.7rem;border-radius:.3rem;
white-space:pre-wrap;word-break:break-all}.frame img{max-width:100%;border-radius:.3rem}.note{color:#555;font-size:.88rem}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _e(value) -> str:
    return html.escape("–" if value is None else str(value))


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _image(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _crop_name(crop: dict) -> str:
    return "crop-{}.jpg".format(crop["index"])


def _figure(crop: dict, data: bytes) -> str:
    quality = ", ".join(f"{k} {v}" for k, v in (crop.get("quality") or {}).items())
    return (f"<figure><img class='crop' alt='crop {crop['index']}' src='{_image(data)}'><figcaption>"
            f"#{crop['index']} p_fake <b>{crop['p_fake']:.4f}</b><br>{_e(_time(crop['frame_time']))}<br>"
            f"{_e(quality)}</figcaption></figure>")


def timeline_svg(points: list[dict], thresholds: dict, width: int = 900, height: int = 260) -> str:
    """p_fake against frame time, one circle per scored crop, the thresholds drawn across."""
    left, right, top, bottom = 44, 12, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [p["frame_time"] for p in points] or [0.0]
    start, span = min(times), max(max(times) - min(times), 1e-6)

    def x(t: float) -> float:
        return left + (t - start) / span * plot_w if len(points) > 1 else left + plot_w / 2

    def y(p: float) -> float:
        return top + (1 - p) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="score timeline">', f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
             f'fill="#fafafa" stroke="#ccc"/>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    for name, colour in (("suspicious", "#b45309"), ("manipulated", "#b91c1c")):
        level = thresholds.get(name)
        if level is not None:
            parts.append(f'<line class="threshold" x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" '
                         f'y2="{y(level):.1f}" stroke="{colour}" stroke-dasharray="6 4"/>'
                         f'<text x="{left + plot_w - 4}" y="{y(level) - 4:.1f}" text-anchor="end" fill="{colour}">'
                         f'{name} {level:.3f}</text>')
    if len(points) > 1:
        path = " ".join(f"{x(p['frame_time']):.1f},{y(p['p_fake']):.1f}" for p in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#2563eb" stroke-width="1.2" opacity="0.6"/>')
    for p in points:
        parts.append(f'<circle class="score" cx="{x(p["frame_time"]):.1f}" cy="{y(p["p_fake"]):.1f}" r="2.6" '
                     f'fill="#2563eb"><title>{_time(p["frame_time"])}: {p["p_fake"]:.4f}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 8}">{_time(start)}</text>'
                 f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end">+{span:.1f} s</text></svg>')
    return "".join(parts)


def render(events: list[dict], evidence: dict | None, files: dict[str, bytes], source: str = "") -> str:
    """The report of one alert from its events (in order), its evidence index and files."""
    first, last = events[0], events[-1]
    opened = next((e for e in events if e["type"] == "opened"), first)
    closed = next((e for e in events if e["type"] == "closed"), None)
    model = {**(last.get("model") or {}), **((evidence or {}).get("model") or {})}
    times = opened.get("times") or {}
    latency = (times["published_at"] - times["last_frame"]) if times.get("published_at") and times.get(
        "last_frame") else None
    timeline = (evidence or {}).get("timeline") or []
    crops = (evidence or {}).get("crops") or []
    rows = [("Stream", last["stream_id"]), ("Track", last.get("track_id")),
            ("Status", f"closed ({closed.get('close_reason')})" if closed else "open"),
            ("Verdict (peak)", last.get("peak_verdict")), ("First frame in the window", _time(times.get("first_frame"))),
            ("Opened", _time(times.get("opened_at"))), ("Closed", _time((closed or {}).get("times", {}).get("scored_at"))),
            ("Frame to alert", f"{latency * 1000:.0f} ms" if latency is not None else None),
            ("Model", model.get("id")), ("Checkpoint sha256", model.get("sha256")),
            ("Precision", model.get("precision")), ("Untrained", model.get("untrained")),
            ("Instance", last.get("instance")), ("Alert id", last["alert_id"])]
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    history = "".join(
        f"<tr><td>{_e(e.get('seq'))}</td><td>{_e(e['type'])}</td><td class='{_e(e.get('verdict'))}'>"
        f"{_e(e.get('verdict'))}</td><td>{_e(round((e.get('statistic') or {}).get('value') or 0, 4))}</td>"
        f"<td>{_e(_time((e.get('times') or {}).get('scored_at')))}</td><td>{_e(e.get('close_reason'))}</td></tr>"
        for e in events)
    thresholds = last.get("thresholds") or {}
    window = last.get("window") or {}
    settings = ", ".join(f"{k} {v}" for k, v in {**thresholds, **{f"window.{k}": v for k, v in window.items()}}.items())
    figures = "".join(_figure(c, files[_crop_name(c)]) for c in crops if _crop_name(c) in files)
    frame = (f"<div class='frame'><img alt='latest frame' src='{_image(files['frame.jpg'])}'></div>"
             if "frame.jpg" in files else "<p class='note'>No frame stored.</p>")
    names = " ".join(f"crops/{_crop_name(c)}" for c in crops)
    rescore = (f"monitor report {last['alert_id']} --redis URL --out report.html --save-crops crops\n"
               f"monitor score-images --model CHECKPOINT {names}")
    evidence_note = "" if evidence else "<p class='note'>No evidence is stored for this alert (evidence off, or expired).</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Deepfake alert {_e(last['alert_id'])}</title><style>{CSS}</style></head>
<body><main>
<h1>Deepfake alert on <code>{_e(last['stream_id'])}</code>: <span class="{_e(last.get('peak_verdict'))}">{_e(last.get('peak_verdict'))}</span></h1>
<p class="note">Made {_e(_time(datetime.datetime.now(datetime.UTC).timestamp()))} by deepfake-monitor{_e(source)}. Scores are the
detector's p_fake of each aligned face crop; thresholds come from the monitor's configuration.</p>
<table>{facts}</table>
<h2>Verdict history</h2>
<table><tr><th>seq</th><th>event</th><th>verdict</th><th>statistic</th><th>at</th><th>close reason</th></tr>{history}</table>
<p class="note">Thresholds and window: {_e(settings)}</p>
<h2>Score timeline ({len(timeline)} scored crops)</h2>
{timeline_svg(timeline, thresholds) if timeline else "<p class='note'>No timeline stored.</p>"}
<h2>The crops the model scored (the {len(crops)} highest of the window)</h2>
{evidence_note}<div class="crops">{figures}</div>
<h2>The latest frame</h2>
{frame}
<h2>Re-check the scores</h2>
<p>Save the crops exactly as stored, then score them with the checkpoint whose sha256 is
<code>{_e(model.get('sha256'))}</code> (model id <code>{_e(model.get('id'))}</code>):</p>
<pre>{_e(rescore)}</pre>
<p class="note">The crops are JPEG (quality as configured); re-scoring them gives the recorded p_fake within the
tolerance stated in the monitor's README.</p>
</main></body></html>
"""
