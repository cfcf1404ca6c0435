"""The dashboard's worker side: Celery tasks over the library's rollout, split by job.

- `celery_app`: the Celery app factory, task names and `send` (the web side enqueues by name);
- `celery`: the process entry point (`celery -A dashboard.worker worker -B` finds its `app`);
- `tasks`: thin Celery tasks that take a row id;
- `context`: what every job needs (settings, sessions, providers) and row logging;
- `leases`: claiming rows so a redelivered task never does the work twice;
- `builds`: building a service into an artifact (and its image);
- `releases`: deploy, roll back, scale and undeploy through `podroute.deploy`;
- `sync`: the periodic reconcile of the record with what the providers run.

Importing this package imports nothing else, so the web side can use `celery_app` cheaply.
"""
