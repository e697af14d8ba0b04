"""deepfake-stream tests, in layers: pure functions, the model on random weights, real media, real peers."""

import os

# As run_stream.py does, before torch loads: OpenMP threads that spin while they wait made one crop's
# preprocessing take ~60 ms instead of ~0.2 ms whenever another program kept a core busy, which is no test of the
# loop (tests/test_overload.py times it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
