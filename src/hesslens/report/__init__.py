"""Reports of an analysis: the JSON summary (:mod:`.summary`), figures (:mod:`.figures`), the HTML page
(:mod:`.html`), the analysis that fills them (:mod:`.analysis`), and folders written whole or not at
all, only inside themselves (:mod:`.output`)."""

from .analysis import (REPORT_FILES, STEPS, AnalysisSettings, ReportFiles, analyze_operator, check_report_folder,
                       write_report)
from ..outputs import OutputError
from .summary import SCHEMA, Summary, load_summary

__all__ = ["REPORT_FILES", "SCHEMA", "STEPS", "AnalysisSettings", "OutputError", "ReportFiles", "Summary",
           "analyze_operator", "check_report_folder", "load_summary", "write_report"]
