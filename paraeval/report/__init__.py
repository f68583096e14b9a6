"""The report: report.html rendered from a results store, its figures and sections, and
everything a finished run writes (:mod:`paraeval.report.outputs`)."""
