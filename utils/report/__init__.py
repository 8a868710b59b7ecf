"""The report: the README's and docs/results.md's tables, the claim sentences and fig/*.png,
written by `python -m utils.report` from the results files (utils.records' schema)."""
