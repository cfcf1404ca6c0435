"""The control plane: one deployment model for the CLI and the dashboard.

- `model`: the vocabulary (targets, the naming rule, marker labels, desired and actual state);
- `rollout`: the one engine that deploys, undoes, rolls back, scales and undeploys;
- `reconcile`: desired vs actual (drift, orphans, missing);
- `environments`: the CLI's environment settings (no keys, no record of endpoints).

Providers live in `podroute.providers`. This package imports nothing itself, so importing one
module never drags in the rest.
"""
