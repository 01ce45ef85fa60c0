"""Child interpreters started by the test suite import the add-on from the checkout under test.

`tests/conftest.py` puts this folder on `PYTHONPATH` and names the checkout in `NATURALSPEECH_SOURCE_ROOT`, so the
`train_tts`, `tts` and `tts-server` processes and the multiprocessing workers that tests start run the same code as
the tests themselves, also when the virtual environment's editable install belongs to another checkout (git
worktrees sharing one `.venv`). Python imports `sitecustomize` after the `.pth` hooks, so this finder wins.
"""

import importlib.util
import os

_root = os.environ.get("NATURALSPEECH_SOURCE_ROOT")
if _root:
    _spec = importlib.util.spec_from_file_location(
        "naturalspeech_source_finder", os.path.join(_root, "build_backend", "source_finder.py")
    )
    _finder = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_finder)
    _finder.install(_root)
