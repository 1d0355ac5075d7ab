"""The fraud engine: pluggable rules that score a transfer, and the evaluator that decides on the scores.

`model` is pure and imports only the standard library; `rules` holds the built-in rules and `evaluate`;
`config` validates the per-stage rule configuration. Nothing is imported here, so importing the model does
not pull pydantic into a cold start.
"""
