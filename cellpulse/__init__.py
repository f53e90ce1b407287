"""cellpulse: an on-premises ML pipeline for 5G/LTE RAN cell KPIs.

Importing the package defines names and sets one process default that must precede polars'
loading (below); settings are resolved and the rest of the process environment is prepared
only at the edge (the CLI, a flow, a test fixture).
"""

import os

# Polars' allocator (jemalloc) hands freed pages back to the host soon after they are freed;
# every large table allocated afterwards pays page faults again (measured: a third of
# ingest's CPU time went to the kernel). Keeping freed pages for 30 s removes most of that
# without raising the peak. A value set by the operator wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000")

__version__ = "0.1.0"
