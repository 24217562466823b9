"""The dashboard's server-drawn charts: scales, gaps, labels."""

from __future__ import annotations

from app.console.charts import Series, build_chart, format_value, nice_ceiling


def test_the_scale_tops_out_at_a_round_number():
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 11, 240, 999, 1001)] == [
        1, 0.5, 1, 10, 20, 250, 1000, 2000]


def test_a_day_without_a_figure_breaks_the_line_instead_of_drawing_a_zero():
    days = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    chart = build_chart("p50", days, [Series("p50", [100.0, None, 300.0, 400.0], "s1")], unit="ms")
    ((series, runs, dots),) = chart.lines
    assert len(runs) == 2 and len(runs[0].split()) == 1 and len(runs[1].split()) == 2
    assert len(dots) == 3
    assert [label for _, label in chart.y_ticks] == ["0 ms", "250 ms", "500 ms"]
    assert chart.rows()[1] == ("2026-03-02", ["\u2013"])


def test_points_stay_inside_the_plot_area():
    days = [f"2026-01-{d:02d}" for d in range(1, 31)]
    chart = build_chart("texts", days, [Series("texts", [float(d * d) for d in range(30)], "s1")])
    ((_, runs, _),) = chart.lines
    for point in runs[0].split():
        x, y = map(float, point.split(","))
        assert chart.plot_left <= x <= chart.plot_right and 12 <= y <= chart.plot_bottom
    assert format_value(12.5, "%") == "12.5%" and format_value(1234.0) == "1,234"
    assert format_value(2500.0, "ms") == "2.5 s" and format_value(750.0, "ms") == "750 ms"
    labels = chart.x_labels
    assert labels[0][1:] == ("01-01", "start") and labels[-1][1:] == ("01-30", "end")
