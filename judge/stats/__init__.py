"""Statistics of the reports: agreement, disparity, PPI, the alternative-annotator test, group error, clustering,
multiplicity."""
