"""Fan-out deliveries in the text summary and the HTML report.

A table per topic (and the total) of the accounting ``expected = delivered
+ missing`` beside the delivery latency, which clock the latencies came
from, and the sample of missing deliveries, so a reader sees at once whether
anyone missed anything and whom to look for in the server's logs.
"""

from __future__ import annotations

import html

from wsload.coordinator.fanout_figures import ClockFigures, DeliveryFigures, FanoutFigures

#: Columns after the topic: (heading, width).
_COLUMNS = (("published", 10), ("expected", 11), ("delivered", 11), ("missing", 9),
            ("dups", 7), ("out of order", 13), ("early", 7), ("p50", 11), ("p99", 11),
            ("max", 11))  # fmt: skip
_NAME_WIDTH = 24
#: Topics listed before "and N more" (the JSON holds them all).
MAX_LISTED = 20


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _cells(d: DeliveryFigures) -> tuple[object, ...]:
    return (d.published, d.expected, d.delivered, d.missing, d.duplicates, d.out_of_order,
            d.early, _ms(d.latency.p50), _ms(d.latency.p99), _ms(d.latency.max))  # fmt: skip


def clock_line(clock: ClockFigures) -> str:
    """Which clock the latencies came from, and how well it was known."""
    if clock.source == "server":
        what = "the server's own timestamps (the server's clock against the workers')"
    elif clock.source == "none":
        return "latency: no delivery carried a publish time"
    elif clock.uncertainty is None and not clock.uncorrected:
        what = "the publishing worker's clock (one host: exact)"
    elif clock.uncertainty is None:
        what = "the publishing worker's clock"
    else:
        what = (
            "the publishing worker's clock, corrected across hosts within "
            f"±{clock.uncertainty * 1000:.3f} ms"
        )
        if clock.source == "mixed":
            what += "; server streams from the server's clock"
    line = f"latency from {what}"
    if clock.uncorrected and clock.source != "server":
        line += f"; not corrected for {', '.join(clock.uncorrected)} (clock never answered)"
    if clock.negative:
        line += f" ({clock.negative} below zero, counted as 0: clocks disagree)"
    return line


def unpublished_note(fanout: FanoutFigures) -> str:
    """A note naming the subscribed topics nothing was published to, in a run that
    published (a misspelt ``topics = ["news/flsh"]``), or ""."""
    if not fanout.total.published:
        return ""
    never = [t for t in fanout.topics if t.subscriptions and not t.published and not t.deliveries]
    if not never:
        return ""
    published = [t.name for t in fanout.topics if t.published]
    shown = ", ".join(f"{t.name} ({t.subscriptions} subscriptions)" for t in never[:MAX_LISTED])
    more = f" and {len(never) - MAX_LISTED} more" if len(never) > MAX_LISTED else ""
    listed = ", ".join(published[:5]) + (" ..." if len(published) > 5 else "")
    return (
        f"never published, nothing delivered: {shown}{more}; this run published to {listed}"
        " (a misspelt topic? these subscriptions tested nothing)"
    )


def fanout_lines(fanout: FanoutFigures) -> list[str]:
    """The text summary's fan-out section."""
    t = fanout.total
    rate = "-" if t.delivery_rate is None else f"{t.delivery_rate:.3f}%"
    lines = [
        f"  Fan-out: {t.published} published, {t.subscriptions} subscriptions, {t.expected} "
        f"deliveries owed, {t.delivered} delivered ({rate}), {t.missing} missing, "
        f"{t.duplicates} duplicates, {t.out_of_order} out of order",
    ]
    if t.early or t.extra:
        lines.append(
            f"  also received: {t.early} published before their subscriber subscribed (early),"
            f" {t.extra} never published (extra); neither counts as delivered"
        )
    width = min(_NAME_WIDTH, max(5, *(len(r.name) for r in fanout.topics), 0))
    lines.append(f"  {'topic':<{width}}" + "".join(f" {h:>{w}}" for h, w in _COLUMNS))
    rows = [*fanout.topics[:MAX_LISTED]]
    if len(fanout.topics) != 1:
        rows.append(t)
    for r in rows:
        name = r.name if len(r.name) <= width else r.name[: width - 1] + "…"
        lines.append(
            f"  {name:<{width}}"
            + "".join(f" {v!s:>{w}}" for v, (_, w) in zip(_cells(r), _COLUMNS, strict=True))
        )
    if len(fanout.topics) > MAX_LISTED:
        lines.append(f"  ... and {len(fanout.topics) - MAX_LISTED} more topics (in the JSON)")
    if note := unpublished_note(fanout):
        lines.append(f"  {note}")
    lines.append("  " + clock_line(fanout.clock))
    if fanout.missing_sample:
        shown = ", ".join(f"{m.topic}#{m.seq} to client {m.client}" for m in fanout.missing_sample)
        lines.append(f"  missing (first {len(fanout.missing_sample)}): {shown}")
    if t.untracked:
        lines.append(f"  {t.untracked} received seqs were not recorded (too many gaps): missing")
    if t.publish_conflicts:
        lines.append(f"  {t.publish_conflicts} publications reused a seq (the later ignored)")
    if fanout.dropped_subscriptions:
        lines.append(f"  {fanout.dropped_subscriptions} subscriptions past the bound: not judged")
    if fanout.dropped_publications:
        lines.append(
            f"  {fanout.dropped_publications} publications past the bound: not kept"
            " (what they delivered reads as extra)"
        )
    return lines


def fanout_html(fanout: FanoutFigures) -> str:
    """The HTML report's fan-out section: the same table."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h, _ in _COLUMNS)
    rows = [*fanout.topics[:MAX_LISTED]]
    if len(fanout.topics) != 1:
        rows.append(fanout.total)
    body = "".join(
        f"<tr><td>{e(r.name)}</td>" + "".join(f"<td>{e(str(v))}</td>" for v in _cells(r)) + "</tr>"
        for r in rows
    )
    sample = ""
    if fanout.missing_sample:
        items = "".join(
            f"<li>{e(m.topic)} #{m.seq} to client {m.client}</li>" for m in fanout.missing_sample
        )
        sample = f"<p>Missing deliveries (first {len(fanout.missing_sample)}):</p><ul>{items}</ul>"
    if note := unpublished_note(fanout):
        sample = f"<p>{e(note[0].upper() + note[1:])}.</p>{sample}"
    rate = fanout.total.delivery_rate
    shown = "-" if rate is None else f"{rate:.3f}%"
    return (
        f"<h2>Fan-out</h2><p>Delivered {fanout.total.delivered} of {fanout.total.expected} owed"
        f" ({e(shown)}); {e(clock_line(fanout.clock))}.</p>"
        f"<table><thead><tr><th>topic</th>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"{sample}"
    )


__all__ = ["MAX_LISTED", "clock_line", "fanout_html", "fanout_lines", "unpublished_note"]
