"""Face finding: MediaPipe's detectors and their model files, the trackers (IoU and roi) and the crop unit."""
