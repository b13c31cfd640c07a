"""``python -m sbt_core.cli`` runs the ``sbt`` command line."""

from . import main

main()
