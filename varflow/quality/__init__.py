"""The quality model: measurements of pixels in memory and the verdicts over them (no files)."""
