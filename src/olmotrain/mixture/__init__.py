"""Data-mix optimisation: swarms of small runs, a regression from mix to metric, a proposal."""
