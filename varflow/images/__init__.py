"""Reading, writing and thumbnailing image files."""
