"""Named crash points for proving crash safety.

`hit("name")` kills the process with SIGKILL — no cleanup, no finally blocks, like a power
cut — when the environment variable CELLPULSE_FAILPOINT is `name` (crash at the first hit)
or `name:N` (crash at the N-th hit). Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "CELLPULSE_FAILPOINT"
_hits: Counter[str] = Counter()


def hit(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
