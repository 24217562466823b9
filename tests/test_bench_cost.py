"""The cost part of ``make bench``: its arithmetic and tables, without timing anything."""

from __future__ import annotations

from scripts.bench import bench_cost, prices


def test_the_prompt_stays_flat_with_memory_and_grows_without():
    prompts = bench_cost.simulate_prompts((10, 100, 1000))["rows"]
    ours = {length: row["ours_prompt"] for length, row in prompts.items()}
    seed = {length: row["seed_prompt"] for length, row in prompts.items()}
    assert ours["10"] == seed["10"]  # nothing to summarise yet: the same request
    assert ours["1000"] <= ours["100"] * 1.1  # flat once the window is full
    assert seed["1000"] > 8 * seed["100"] / 1.1 > ours["1000"]
    assert prompts["1000"]["ours_summary_chars"] <= bench_cost.SUMMARY_CHARS
    # About one summary update per ten messages.
    assert 95 <= prompts["1000"]["summary_updates"] <= 100


def test_normalisation_moves_replies_to_fewer_segments():
    segments = bench_cost.segment_distribution()
    assert segments["segments_after"] < segments["segments_before"]
    assert segments["ucs2_after"] < segments["ucs2_before"]
    assert sum(segments["after"].values()) == sum(segments["before"].values()) == segments["replies"]


def test_prices_are_applied_per_unit():
    row = {"segments_in": 1, "segments_out": 2, "input_tokens": 1000, "output_tokens": 100,
           "rru": 4, "wru": 10}
    cost = bench_cost.price(row)
    assert cost["sms"] == 1000 * 3 * prices.SMS_OUTBOUND_PER_SEGMENT
    model = 1000 * (1000 * prices.MODEL_INPUT_PER_TOKEN + 100 * prices.MODEL_OUTPUT_PER_TOKEN)
    assert abs(cost["model"] - model) < 1e-12
    assert abs(cost["total"] - (cost["sms"] + cost["model"] + cost["dynamodb"])) < 1e-12


def test_the_cost_section_renders_every_design_and_length():
    prompts = bench_cost.simulate_prompts((10, 100))
    units = {str(n): {"ours": {"rru": 3, "wru": 8}, "seed": {"rru": 5, "wru": 9}} for n in (10, 100)}
    segments = bench_cost.segment_distribution()
    table = []
    for length in (10, 100):
        for design in ("ours", "seed"):
            row = {"design": design, "length": length, "segments_in": 1, "segments_out": 1.5,
                   "input_tokens": 500, "output_tokens": 30, **units[str(length)][design]}
            row["cost"] = bench_cost.price(row)
            table.append(row)
    text = "\n".join(bench_cost.cost_section({"prompts": prompts, "segments": segments, "units": units,
                                               "table": table, "prices": prices.describe()}))
    assert text.count("| DadaCat SMS |") == 2 and text.count("| original design |") == 2
    assert prices.REVIEWED in text and "| as written |" in text and "| as sent |" in text
