"""Area types and their hourly load shapes, and the radio bands cells run on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AREA_TYPES = ("business", "residential", "transport", "rural", "venue")
AREA_WEIGHTS = (0.2, 0.38, 0.1, 0.22, 0.1)

# Hourly load shape per area type (0..1, peak = 1): (weekday, weekend or holiday).
# fmt: off
PROFILES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "business": (
        np.array([.08, .05, .04, .04, .05, .1, .25, .5, .8, .95, 1, 1,
                  .95, .97, 1, .97, .9, .75, .5, .35, .28, .22, .16, .11]),
        np.array([.08, .05, .04, .04, .04, .05, .08, .12, .18, .24, .28, .3,
                  .3, .3, .28, .26, .24, .22, .2, .18, .16, .14, .12, .1]),
    ),
    "residential": (
        np.array([.25, .15, .1, .08, .08, .12, .25, .4, .42, .38, .36, .38,
                  .42, .42, .42, .45, .55, .68, .82, .93, 1, .95, .75, .45]),
        np.array([.3, .2, .12, .1, .08, .1, .15, .28, .45, .58, .66, .7,
                  .72, .72, .7, .7, .72, .78, .86, .95, 1, .95, .78, .5]),
    ),
    "transport": (
        np.array([.1, .05, .03, .03, .08, .3, .75, 1, .9, .6, .5, .5,
                  .55, .5, .5, .6, .85, 1, .85, .6, .45, .35, .25, .15]),
        np.array([.1, .06, .04, .03, .05, .1, .2, .3, .4, .5, .55, .58,
                  .6, .6, .58, .55, .52, .5, .45, .4, .35, .3, .22, .15]),
    ),
    "rural": (
        np.array([.2, .12, .08, .06, .06, .1, .25, .45, .55, .55, .55, .58,
                  .6, .58, .56, .6, .68, .8, .92, 1, .98, .85, .6, .35]),
        np.array([.22, .14, .1, .07, .06, .08, .15, .3, .5, .62, .68, .7,
                  .7, .68, .66, .68, .74, .84, .94, 1, .98, .86, .62, .38]),
    ),
    "venue": (
        np.array([.1, .06, .04, .03, .03, .05, .1, .2, .3, .35, .38, .4,
                  .42, .4, .38, .4, .45, .55, .7, .85, 1, .9, .6, .3]),
        np.array([.15, .08, .05, .04, .03, .05, .08, .15, .3, .45, .6, .7,
                  .75, .75, .75, .8, .85, .9, .95, 1, 1, .9, .65, .35]),
    ),
}
# fmt: on
PEAK_USERS = {"business": 70, "residential": 55, "transport": 90, "rural": 18, "venue": 35}
HANDOVERS_PER_USER = {
    "business": 0.4,
    "residential": 0.2,
    "transport": 1.5,
    "rural": 0.3,
    "venue": 0.3,
}


@dataclass(frozen=True)
class Band:
    name: str
    rat: str
    prbs: int
    peak_ue_dl_mbps: float  # what one user gets on an empty cell with good radio
    peak_ue_ul_mbps: float
    cell_capacity_mbps: float


BANDS = {
    "n78": Band("n78", "NR", 273, 300.0, 50.0, 700.0),  # 3.5 GHz mid band: capacity
    "n28": Band("n28", "NR", 52, 60.0, 20.0, 110.0),  # 700 MHz low band: coverage
    "B3": Band("B3", "LTE", 100, 80.0, 25.0, 150.0),
    "B20": Band("B20", "LTE", 50, 40.0, 15.0, 75.0),
}

# Band layers a site may carry on each sector, with their probability.
URBAN_LAYERS = (
    (("n78",), 0.25),
    (("n78", "B3"), 0.4),
    (("n78", "B3", "n28"), 0.2),
    (("B3",), 0.15),
)
RURAL_LAYERS = ((("B20",), 0.45), (("B20", "B3"), 0.35), (("n28",), 0.2))


def profile_at(area: str, hours: np.ndarray, weekend_like: bool) -> np.ndarray:
    """Load shape at fractional hours of the day (periodic interpolation of the hourly curve)."""
    curve = PROFILES[area][1 if weekend_like else 0]
    xs = np.arange(25) + 0.5
    return np.interp(hours, xs, np.append(curve, curve[0]), period=24)
