"""The `cumulo` command: Typer commands on top of the SDK."""
