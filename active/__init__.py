"""Active learning: query strategies, pools, rounds, oracles."""
