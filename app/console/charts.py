"""Server-drawn SVG charts: geometry computed here, markup in a template, no script anywhere.

Why not a charting library: every page must work under a Content-Security-Policy
with no inline or external script, and a handful of daily series needs no more
than polylines, so the figures are drawn on the server and the page stays inert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 640
HEIGHT = 200
LEFT = 60
RIGHT = 12
TOP = 12
BOTTOM = 26


@dataclass(frozen=True)
class Series:
    """One line of a chart: a name, its values (None for no figure that day) and a CSS class."""

    name: str
    values: Sequence[float | None]
    css: str


@dataclass
class Chart:
    """A chart ready for the template: plotted polylines, axis labels and the table of figures."""

    title: str
    unit: str
    days: list[str]
    series: list[Series]
    lines: list[tuple[Series, list[str], list[tuple[float, float]]]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def plot_bottom(self) -> float:
        return self.height - BOTTOM

    @property
    def plot_left(self) -> float:
        return LEFT

    @property
    def plot_right(self) -> float:
        return self.width - RIGHT

    def rows(self) -> list[tuple[str, list[str]]]:
        """Return the figures as table rows: day, then one formatted value per series."""
        return [
            (day, [format_value(s.values[i], self.unit) for s in self.series])
            for i, day in enumerate(self.days)
        ]


def format_value(value: float | None, unit: str = "") -> str:
    """Format a figure for a label or a table cell."""
    if value is None:
        return "\u2013"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "ms" and value >= 1000:
        return f"{value / 1000:g} s"
    text = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".strip() if unit and unit != "%" else text


def nice_ceiling(value: float) -> float:
    """Return a round number at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def build_chart(title: str, days: list[str], series: list[Series], unit: str = "") -> Chart:
    """Lay out a line chart of daily series."""
    chart = Chart(title=title, unit=unit, days=days, series=series)
    present = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(present, default=0.0))
    span_x = chart.plot_right - chart.plot_left
    span_y = chart.plot_bottom - TOP
    count = max(1, len(days) - 1)

    def x(index: int) -> float:
        return round(chart.plot_left + span_x * index / count, 1)

    def y(value: float) -> float:
        return round(chart.plot_bottom - span_y * value / top, 1)

    for s in series:
        runs: list[str] = []
        dots: list[tuple[float, float]] = []
        current: list[str] = []
        for index, value in enumerate(s.values):
            if value is None:
                if current:
                    runs.append(" ".join(current))
                current = []
                continue
            current.append(f"{x(index)},{y(value)}")
            dots.append((x(index), y(value)))
        if current:
            runs.append(" ".join(current))
        chart.lines.append((s, runs, dots if len(days) <= 31 else []))
    chart.y_ticks = [(y(top * f), format_value(top * f, unit)) for f in (0, 0.5, 1)]
    step = max(1, len(days) // 6)
    shown = list(range(0, len(days) - 1, step)) + [len(days) - 1]
    if len(shown) > 2 and shown[-1] - shown[-2] < step / 2:
        del shown[-2]  # keep the last day's label clear of its neighbour
    chart.x_labels = [
        (x(i), days[i][5:], "start" if i == 0 else "end" if i == len(days) - 1 else "middle")
        for i in shown
    ]
    return chart
