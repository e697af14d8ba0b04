"""Face streams to per-face fake scores: sources, detection, tracking, rings, pipeline, scores and the store."""
