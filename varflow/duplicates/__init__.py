"""Perceptual hashes, their index, and the near-duplicate decision."""
