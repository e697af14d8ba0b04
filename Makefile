# One command installs and runs the demo (`make run`), one installs and runs the tests (`make test`); `make test-fast`
# runs only the inner loop's tests (the modules marked `fast`), in under a minute.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Both MediaPipe face models, taken out of one download of the pinned wheel and hash-checked, into the folder
# model/weights_dir.py picks for a checkout: $DEEPFAKE_STREAM_WEIGHTS when set, else weights/.
WEIGHTS_DIR := $(or $(DEEPFAKE_STREAM_WEIGHTS),weights)
FACE_MODELS := $(WEIGHTS_DIR)/face_detection_full_range_sparse.tflite $(WEIGHTS_DIR)/face_detection_short_range.tflite
DURATION ?=
RUN_ARGS ?= demo --dashboard --serve 0

.PHONY: setup run test test-fast bench lint clean

setup: $(STAMP) $(FACE_MODELS)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	touch $@

# One run installs (or verifies) both; touch them so a verified copy older than the venv is not re-checked each time.
$(FACE_MODELS) &: $(STAMP)
	$(PY) -m stream.faces.model_files
	touch $(FACE_MODELS)

run: setup
	$(PY) run_stream.py $(RUN_ARGS) $(if $(DURATION),--duration $(DURATION))

test: setup
	$(PY) -m pytest -q

# Only the files that carry the mark are collected: collecting the whole suite alone imports Ray, aiortc, Streamlit
# and the rest (~12 s of CPU). The test plugins of hypothesis and schemathesis serve only the fuzz test.
FAST_TESTS = $(shell grep -l 'pytest.mark.fast' tests/test_*.py)
test-fast: setup
	$(PY) -m pytest -q -m fast -p no:hypothesispytest -p no:schemathesis $(FAST_TESTS)

bench: setup
	$(PY) bench/encode.py
	$(PY) bench/window.py
	$(PY) bench/pipeline.py
	$(PY) bench/live.py
	$(PY) bench/dashboard.py
	$(PY) bench/store.py
	$(PY) bench/cluster.py
	$(PY) bench/faces.py --row whole_frame=faces.mode:full_frame

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build dist
