"""The Typer layer: `options` (the app and shared options), one module per verb group, and `main`
(registers them all and maps errors to exit codes). The work itself is in migrator.commands."""
