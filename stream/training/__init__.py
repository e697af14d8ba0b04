"""Training data: labelled video sets and their preparation with the serving crop unit."""
