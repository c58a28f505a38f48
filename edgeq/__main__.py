"""`python -m edgeq` runs the command line."""

from edgeq.cli import main

main()
