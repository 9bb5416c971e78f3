"""Making variations: the backends, their registry, and the never-pay-twice cache."""
