"""cellpulse: an on-premises ML pipeline for 5G/LTE RAN cell KPIs.

Importing the package does nothing beyond defining names: settings are resolved and the
process environment is prepared only at the edge (the CLI, a flow, a test fixture).
"""

__version__ = "0.1.0"
