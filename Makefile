# Two commands on a fresh Debian/Ubuntu machine:
#   make demo   set everything up, then run the main job
#   make test   set everything up, then lint and run the test suite
# Both create or refresh the virtual environment in $(VENV) themselves.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test lint setup system-deps clean gpu-bundle gpu-check

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

# GPU readiness (issue #17). `make gpu-bundle` runs here, with network access: it downloads the wheels the GPU machine
# lacks (benchmarks/gpu_bundle.txt names each and why) for its CPython 3.12 on manylinux x86_64, and copies the 32
# shared clips, into the git-ignored $(GPU_BUNDLE); it fails when the folder passes $(GPU_BUNDLE_MAX_MIB) MiB.
# `make gpu-check` runs on the GPU machine with its own python3: benchmarks/gpu_check.py installs the wheels into a
# temporary folder and writes benchmarks/results/gpu_check.{json,md}.
GPU_BUNDLE ?= gpu_bundle
GPU_BUNDLE_MAX_MIB ?= 50
GPU_DATA ?= ../shared/data/ljspeech
GPU_PIP = $(shell test -x $(BIN)/python && echo $(BIN)/python || echo $(PYTHON)) -m pip
GPU_PLATFORMS = manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
GPU_CHECK_ARGS ?=

gpu-bundle:
	rm -rf $(GPU_BUNDLE)/wheels $(GPU_BUNDLE)/ljspeech
	mkdir -p $(GPU_BUNDLE)/wheels $(GPU_BUNDLE)/ljspeech
	$(GPU_PIP) download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
		--python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
		$(addprefix --platform ,$(GPU_PLATFORMS)) --platform any \
		-d $(GPU_BUNDLE)/wheels -r benchmarks/gpu_bundle.txt
	cp -r $(GPU_DATA)/wavs $(GPU_DATA)/metadata.csv $(GPU_BUNDLE)/ljspeech/
	-git rev-parse --short HEAD > $(GPU_BUNDLE)/COMMIT 2>/dev/null
	@bytes=$$(du -sb $(GPU_BUNDLE) | cut -f1); limit=$$(( $(GPU_BUNDLE_MAX_MIB) * 1048576 )); \
	tree=$$(git ls-files -z 2>/dev/null | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1); \
	echo "$(GPU_BUNDLE): $$(ls $(GPU_BUNDLE)/wheels | wc -l) wheels + $$(ls $(GPU_BUNDLE)/ljspeech/wavs | wc -l) clips," \
		"$$(( bytes / 1048576 )) MiB (limit $(GPU_BUNDLE_MAX_MIB) MiB); with the tracked tree $$(( (bytes + $${tree:-0}) / 1048576 )) MiB of the 64 MiB that travel"; \
	if [ $$bytes -gt $$limit ]; then echo "$(GPU_BUNDLE) is larger than $(GPU_BUNDLE_MAX_MIB) MiB: it would not travel" >&2; exit 1; fi

gpu-check:
	$(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)
