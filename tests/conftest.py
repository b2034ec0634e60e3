pytest_plugins = ["migrator.sandbox.pytest_plugin"]
