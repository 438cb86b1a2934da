"""From a trained network to its compressed form: masks, thresholds, bit precision, accounting and the files."""
