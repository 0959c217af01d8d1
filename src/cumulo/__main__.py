"""`python -m cumulo ...` is the `cumulo` command (for when pip's script folder is not on PATH)."""

from cumulo.cli.main import main

main()
