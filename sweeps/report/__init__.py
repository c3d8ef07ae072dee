"""Reports and the atlas: a study's data, statistics, tables, figures, verdicts and pages."""
