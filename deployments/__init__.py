"""Prefect deployments: the nightly schedule, the manual run form, the file-change trigger, and the
watcher that turns file changes into Prefect events."""
