"""``python -m edgeres`` runs the CLI."""

from edgeres.cli import main

main()
