# Two commands on a fresh Debian/Ubuntu machine:
#   make demo   set everything up, then run the main job
#   make test   set everything up, then lint and run the test suite
# Both create or refresh the virtual environment in $(VENV) themselves.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test lint setup system-deps clean

demo: setup
	$(BIN)/python recipes/ljspeech/naturalspeech/demo.py

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

setup: system-deps $(VENV)/.installed

# espeak-ng phonemizes text; ffmpeg's shared libraries are what torchcodec (and so torchaudio) loads audio with;
# on Debian, chromium and its driver run the server's web page in the browser test
# (tests/tts_tests/test_naturalspeech_web_page.py). Ubuntu ships Chromium only as a snap: there the test is skipped.
DEBIAN := $(shell grep -qx 'ID=debian' /etc/os-release 2>/dev/null && echo yes)
BROWSER_PACKAGES := $(if $(DEBIAN),chromium chromium-driver)

system-deps:
	@if ! command -v espeak-ng >/dev/null || ! command -v ffmpeg >/dev/null \
		|| { [ -n "$(DEBIAN)" ] && ! command -v chromedriver >/dev/null; }; then \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y \
			espeak-ng ffmpeg $(BROWSER_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt build_backend/backend.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info
