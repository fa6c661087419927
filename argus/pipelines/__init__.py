"""End-to-end pipelines that chain the packages (glue only; nothing imports `argus`)."""
