"""The evaluation side of each task kind, for the stages evaluate and export."""

from __future__ import annotations

from pipeline.errors import HasatError
from pipeline.tasks.base import TaskReport
from pipeline.tasks.classification.report import ClassificationReport
from pipeline.tasks.preference.report import PreferenceReport
from pipeline.tasks.sft.report import SftReport

REPORTS: dict[str, TaskReport] = {task.kind: task for task in (SftReport(), ClassificationReport(), PreferenceReport())}


def report_for(kind: str) -> TaskReport:
    if kind not in REPORTS:
        raise HasatError(f"task kind '{kind}' is not one of {', '.join(REPORTS)}")
    return REPORTS[kind]
