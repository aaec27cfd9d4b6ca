"""Scoring: the metric kernel, Day1 and ERA5-per-lead scorers, the round score and their writes."""
