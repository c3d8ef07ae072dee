"""`python -m sweeps`: the same as the `gan-sweep` command."""

from sweeps.entry import main

main()
