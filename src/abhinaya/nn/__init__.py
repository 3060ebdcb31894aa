"""Building blocks with no I/O: pooling, standardisation, SpecAugment, the window Q-Former, BEATs, losses."""
