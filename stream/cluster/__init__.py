"""Detectors as Ray actors placed by a coordinator (`python -m stream.cluster cameras.yaml`); Ray loads only there."""
