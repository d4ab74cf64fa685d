"""Reports of an analysis: the JSON summary (:mod:`.summary`), figures (:mod:`.figures`), the HTML page
(:mod:`.html`), and the analysis that fills them (:mod:`.analysis`)."""

from .analysis import STEPS, AnalysisSettings, ReportFiles, analyze_operator, write_report
from .summary import SCHEMA, Summary, load_summary

__all__ = ["SCHEMA", "STEPS", "AnalysisSettings", "ReportFiles", "Summary", "analyze_operator", "load_summary",
           "write_report"]
