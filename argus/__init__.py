"""Argus: readable CNN arguments, judged by people.

The `argus` package is the command line and the end-to-end pipelines; it is glue only.
The work lives in `training`, `explain`, `crowd`, `analysis` and `active`.
"""

__version__ = "0.1.0"
