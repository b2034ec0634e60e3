"""One module per verb, each a plain typed function that the CLI (migrator/cli) and the tests call; no
Typer here. `common` is what they share (loading the runbook, an engine wired to its hooks)."""
