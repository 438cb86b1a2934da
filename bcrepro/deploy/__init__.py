"""Running a compressed network: the slimmed export, sparse layers and the speed-up measurement."""
