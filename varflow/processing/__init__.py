"""Which images a run takes, how they are admitted and chunked, and one image's pipeline."""
