"""``python -m givetake.cli``: the same as the ``givetake`` command."""

from givetake.cli import main

main()
