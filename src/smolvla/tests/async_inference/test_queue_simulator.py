import json

import pytest

from smolvla.async_inference.simulator import main, simulate

COMMON = dict(chunk_size=50, duration=60.0, latency_cv=0.05, warmup=None, seed=1)


def test_sync_idles_about_latency_over_dt_ticks_per_chunk():
    result = simulate(rate=30.0, mode="async", threshold=0.0, latency_mean=0.6, **COMMON)
    assert result.idle_ticks_per_chunk == pytest.approx(0.6 * 30, abs=1.5)
    assert result.actions_per_chunk == pytest.approx(50, abs=1.0)  # whole chunks; the first one ends the start-up
    assert result.idle_fraction == pytest.approx(18 / (18 + 50), abs=0.03)


@pytest.mark.parametrize("mode_threshold", [("async", 0.7), ("async", 1.0), ("auto", 0.0)])
def test_threshold_above_the_bound_never_idles(mode_threshold):
    mode, threshold = mode_threshold
    # g_min = 0.6 / (50 / 30) = 0.36, and the latency is under half a chunk's duration.
    result = simulate(rate=30.0, mode=mode, threshold=threshold, latency_mean=0.6, **COMMON)
    assert result.idle_fraction == 0.0
    assert result.starvation_episodes == 0
    assert result.threshold > 0.36


def test_below_the_bound_the_queue_runs_dry_every_chunk():
    result = simulate(rate=30.0, mode="async", threshold=0.2, latency_mean=0.6, **COMMON)
    assert result.starvation_episodes >= result.chunks_per_second * 60 * 0.9


@pytest.mark.parametrize(("tick_clock", "least_idle"), [("action", 0.4), ("wall", 0.8)])
def test_latency_over_half_a_chunk_idles_whatever_the_threshold(tick_clock, least_idle):
    # 1.5 s at 30 Hz with n = 50: a chunk arrives 45 ticks after its observation, so the queue cannot stay full.
    # With the wall clock it brings only 5 fresh actions; with the action clock it continues where the arm stopped.
    result = simulate(rate=30.0, mode="async", threshold=1.0, latency_mean=1.5, tick_clock=tick_clock, **COMMON)
    assert result.idle_fraction > least_idle


def test_action_clock_sync_executes_whole_chunks_then_idles_the_latency():
    wall = simulate(rate=30.0, mode="async", threshold=0.0, latency_mean=1.5, tick_clock="wall", **COMMON)
    action = simulate(rate=30.0, mode="async", threshold=0.0, latency_mean=1.5, tick_clock="action", **COMMON)
    assert wall.actions_per_chunk == pytest.approx(50 - 45, abs=1.5)  # the held ticks used up the chunk
    assert action.actions_per_chunk == pytest.approx(50, abs=0.5)  # the paper's synchronous regime
    assert action.idle_ticks_per_chunk == pytest.approx(45, rel=0.1)  # the first chunk ends the start-up instead
    assert action.idle_fraction < 0.5 < wall.idle_fraction


def test_command_prints_a_table_per_rate_writes_the_plot_and_ends_with_json(tmp_path, capsys):
    plot = tmp_path / "queue.png"
    assert main(["--duration", "20", "--rate", "30", "10", "--plot", str(plot), "--thresholds", "0", "0.7"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert [(r["rate"], r["mode"]) for r in summary["results"]] == [(30.0, "async")] * 2 + [(30.0, "auto")] + [
        (10.0, "async")
    ] * 2 + [(10.0, "auto")]
    assert sum(line.startswith("| 0.7 |") for line in lines) == 2
    assert plot.stat().st_size > 5000 and plot.read_bytes()[:4] == b"\x89PNG"
