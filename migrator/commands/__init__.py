"""One module per verb, each a plain typed function that the CLI (migrator/cli) and the tests call; no
Typer here. `common` is what they share (loading the runbook, an engine wired to its hooks).

Every verb module is imported for `migrate --help` and shell completion (the CLI registers them all), so
what only running a verb needs (the engine, the step catalogue, the adapters, the sandbox) is imported
inside the function that runs it; that is why the imports inside functions here are there."""
