"""deepfake-stream tests, in layers: pure functions, the model on random weights, real media, real peers."""
