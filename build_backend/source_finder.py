"""Import the add-on's modules from a source tree, next to an installed `coqui-tts`.

The repository's `TTS/` folder has no `__init__.py` (the wheel must never ship coqui's), so Python's normal
import system resolves `TTS` to the installed toolkit and never looks into the source tree: a regular package
wins over a namespace portion wherever it sits on `sys.path`. This finder maps exactly the add-on's top-level
module names to their source files, and nothing else of `TTS`. Submodules of `TTS.tts.layers.naturalspeech`
then resolve through that package's `__path__` as usual.

Used by the editable install (a `.pth` file calls `install()`) and by the test suite (`tests/__init__.py`).
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

ADDON_MODULES = {
    "TTS.tts.models.naturalspeech": "TTS/tts/models/naturalspeech.py",
    "TTS.tts.configs.naturalspeech_config": "TTS/tts/configs/naturalspeech_config.py",
    "TTS.tts.layers.naturalspeech": "TTS/tts/layers/naturalspeech",
}


class NaturalspeechSourceFinder(importlib.abc.MetaPathFinder):
    """Finds the add-on's modules under `root`, the repository checkout."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def find_spec(self, fullname, path=None, target=None):
        relative = ADDON_MODULES.get(fullname)
        if relative is None:
            return None
        location = self.root / relative
        if location.is_dir():
            return importlib.util.spec_from_file_location(
                fullname, location / "__init__.py", submodule_search_locations=[str(location)]
            )
        return importlib.util.spec_from_file_location(fullname, location)


def install(root: str | Path) -> NaturalspeechSourceFinder:
    """Put a finder for the checkout at `root` first on `sys.meta_path` (once); call it before importing the add-on.

    A finder for another checkout is removed: with git worktrees sharing one virtual environment, the editable
    install's `.pth` hook has already installed a finder for the checkout it was installed from.
    """
    root = Path(root).resolve()
    for finder in list(sys.meta_path):
        # by name too: the `.pth` hook loads this file as another module, so its class is another object
        if isinstance(finder, NaturalspeechSourceFinder) or type(finder).__name__ == "NaturalspeechSourceFinder":
            if Path(finder.root) == root:
                return finder
            sys.meta_path.remove(finder)
    finder = NaturalspeechSourceFinder(root)
    sys.meta_path.insert(0, finder)
    return finder
