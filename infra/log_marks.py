"""Marks on log records that the terminal reads (``vecpress/cli/run_console.py``).

A record logged with ``extra=HEADLINE`` is one of a run's headline lines: a stage done, the
files found, the build that serves, a wait for another run. A terminal shows those by default,
with the run's link, progress bars and warnings; Prefect's own lines (task states) need
``--verbose``. Every line reaches the Prefect API and the run's page either way.
"""

from __future__ import annotations

STAGE_LINE = "vecpress_headline"
HEADLINE = {STAGE_LINE: True}
