"""Everything that finds, assembles, converts, verifies or caches weights, apart from the models."""
