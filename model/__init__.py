"""The deepfake classifier: network, checkpoints, preprocessing and the inference engines."""
