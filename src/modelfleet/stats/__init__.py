"""Statistics shared by the reference profile (conversion) and the drift exporter (serving hosts)."""
