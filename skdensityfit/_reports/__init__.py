"""Reports of fits: tables, warnings, information criteria, plots."""
