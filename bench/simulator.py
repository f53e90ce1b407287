"""Simulator speed: one day of a national network and a week of a regional one."""

from __future__ import annotations

from bench.common import Measurement, peak_rss_mb, record, repeat
from cellpulse.simulator import SimulationConfig, build_topology, draw_events, simulate_day


def one_day(cells: int, day: int = 1) -> int:
    cfg = SimulationConfig(cells=cells, days=day + 1, seed=1)
    topo = build_topology(cfg)
    return simulate_day(topo, draw_events(topo, cfg), cfg, day).height


def week(cells: int) -> int:
    cfg = SimulationConfig(cells=cells, days=7, seed=1)
    topo = build_topology(cfg)
    events = draw_events(topo, cfg)
    return sum(simulate_day(topo, events, cfg, d).height for d in range(7))


def main(runs: int = 3) -> None:
    results = []
    rows, times = repeat(lambda: one_day(100_000), runs)
    results.append(
        Measurement(
            "1 day × 100,000 cells (events on)", rows, times, peak_rss_mb(), "goal: well under 60 s"
        )
    )
    rows, times = repeat(lambda: week(10_000), runs)
    results.append(Measurement("7 days × 10,000 cells", rows, times, peak_rss_mb()))
    record(
        "Simulator",
        "python -m bench.run simulator",
        results,
        "Generation only (topology, events, KPIs in memory); writing files is measured "
        "with ingest.",
    )


if __name__ == "__main__":
    main()
