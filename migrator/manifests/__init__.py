"""The platform's Kubernetes manifests: one YAML file per set, rendered by `render.py` with the runbook's
variables (`${vars.x}` in string values; see defaults.yaml for every variable and its default)."""
