"""``python -m givetake``: the same as the ``givetake`` command."""

from givetake.cli import main

main()
