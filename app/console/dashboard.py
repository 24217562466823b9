"""The console's dashboard: the daily figures of a chosen period, as charts and totals."""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from app.console.charts import Chart, Series, build_chart, format_value
from app.services import services
from conversation.daily_stats import DayStats

PERIODS = (7, 30, 90)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def merged(days: list[DayStats]) -> DayStats:
    """Return one DayStats summing a period (for its totals and latency percentiles)."""
    total = DayStats(days[-1].day)
    for day in days:
        for name, value in day.figures.items():
            total.figures[name] += value
        total.latency = [a + b for a, b in zip(total.latency, day.latency, strict=True)]
    return total


def charts(days: list[DayStats]) -> list[Chart]:
    """Build the dashboard's charts from a period's daily figures."""
    labels = [d.day.isoformat() for d in days]

    def figure(name: str) -> list[float | None]:
        return [float(d[name]) for d in days]

    return [
        build_chart("Texts and replies per day", labels, [
            Series("texts", figure("texts"), "s1"), Series("replies", figure("replies"), "s2")]),
        build_chart("Model tokens per day", labels, [Series("tokens", figure("tokens"), "s1")]),
        build_chart("SMS segments per day (replies)", labels, [Series("segments", figure("segments"), "s2")]),
        build_chart("Fallback rate", labels, [
            Series("fallback rate", [_percent(d.fallback_rate) for d in days], "s3")], unit="%"),
        build_chart("Model latency percentiles", labels, [
            Series("p50", [d.latency_percentile(0.5) for d in days], "s1"),
            Series("p90", [d.latency_percentile(0.9) for d in days], "s2"),
            Series("p99", [d.latency_percentile(0.99) for d in days], "s3"),
        ], unit="ms"),
        build_chart("Delivery failures per day", labels, [
            Series("failures", figure("delivery_failures"), "s3")]),
        build_chart("Active numbers per day", labels, [
            Series("numbers", figure("active_numbers"), "s1")]),
    ]


def totals(days: list[DayStats]) -> list[tuple[str, str]]:
    """Return the period's headline figures as (label, value) pairs."""
    total = merged(days)
    return [
        ("texts", format_value(total["texts"])),
        ("replies", format_value(total["replies"])),
        ("tokens", format_value(total["tokens"])),
        ("segments", format_value(total["segments"])),
        ("fallback rate", format_value(_percent(total.fallback_rate), "%")),
        ("model latency p50", format_value(total.latency_percentile(0.5), "ms")),
        ("model latency p99", format_value(total.latency_percentile(0.99), "ms")),
        ("delivery failures", format_value(total["delivery_failures"])),
        ("busiest day, active numbers", format_value(max(d["active_numbers"] for d in days))),
    ]


def dashboard() -> Any:
    """Show the figures of the last 7, 30 or 90 days."""
    try:
        period = int(request.args.get("days", "7"))
    except ValueError:
        period = 7
    if period not in PERIODS:
        period = 7
    days = services().daily_stats.read(period)
    return render_template(
        "console/dashboard.html", period=period, periods=PERIODS, charts=charts(days), totals=totals(days)
    )
