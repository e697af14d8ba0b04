"""Capture: source references, decoding with PyAV, the bounded frame buffers and one capture thread per source."""
