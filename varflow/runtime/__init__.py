"""A run's resources and shared state: records, limits, locks, claims, one paid attempt."""
