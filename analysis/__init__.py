"""Analysis of crowd judgments: agreement, aggregation, model-vs-human metrics, reports."""
