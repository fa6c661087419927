"""Crowd-work providers. `mturk_client` is the thin boto3 layer for Amazon Mechanical Turk,
`mturk_models` its tables, `mturk_service` the layer that reconciles MTurk with the Argus
database. Nothing here is imported by the crowd server at start-up; boto3 loads lazily."""
