"""A tiny code location for the forking run launcher's tests: a job that reports where it runs.

``IMPORTED_IN`` is the pid of the process that imported this module: a run forked from the preloaded
process sees its parent's pid there, a run in a spawned process sees its own.
"""

import json
import os
import time
from pathlib import Path

from dagster import Config, Definitions, OpExecutionContext, in_process_executor, job, op

IMPORTED_IN = os.getpid()


class ReportConfig(Config):
    report: str
    hold_s: float = 0.0  # stay running this long (until the run is stopped), for kill and cancel tests


@op
def report_where(context: OpExecutionContext, config: ReportConfig) -> None:
    Path(config.report).write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "imported_in": IMPORTED_IN}))
    deadline = time.monotonic() + config.hold_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
    context.log.info("done")


@job(executor_def=in_process_executor)  # one process per run, as the batch jobs
def report_job():
    report_where()


defs = Definitions(jobs=[report_job])
