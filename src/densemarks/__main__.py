"""`python -m densemarks` (also what `torchrun -m densemarks` runs)."""

from densemarks.cli import main

main()
