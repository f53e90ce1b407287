"""`python -m cellpulse.cli`: the same as the `cellpulse` command."""

from cellpulse.cli import main

main()
