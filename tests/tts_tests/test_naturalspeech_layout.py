"""The layout of `TTS/tts/layers/naturalspeech/`: the paper's modules stand on their own.

The modules at the package's top level are the paper's blocks; `runtime/` (data, checkpoints, Trainer hooks, ONNX,
plots) and `pretraining/` build on them, never the other way round, and no layer imports the model that wires them.
The imports are read from the source with `ast`, so a lazy import inside a function counts as well.
"""

import ast
from pathlib import Path

import pytest

from tests import REPO_ROOT

PACKAGE = "TTS.tts.layers.naturalspeech"
PACKAGE_DIR = REPO_ROOT / "TTS" / "tts" / "layers" / "naturalspeech"
SUBPACKAGES = ("runtime", "pretraining")
MODEL_MODULE = "TTS.tts.models.naturalspeech"


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the code of `module`) imports, relative imports resolved, `from a import b` as `a.b` too.

    `a.b` is listed besides `a` because `b` may be a submodule: `from TTS.tts.layers.naturalspeech import runtime`
    imports the subpackage. Relative imports of a package's `__init__.py` start from the package itself.
    """
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base_parts = package_parts[: len(package_parts) - node.level + 1] if node.level else []
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _imports_of(path: Path) -> tuple[str, set[str]]:
    """The dotted name of the module at `path` and the modules it imports."""
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    is_package = relative.name == "__init__"
    module = ".".join(relative.parts[:-1] if is_package else relative.parts)
    return module, imported_modules(path.read_text(encoding="utf-8"), module, is_package)


def _is_within(name: str, module: str) -> bool:
    return name == module or name.startswith(f"{module}.")


def _paper_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.py"))


def test_the_subpackages_exist_and_the_paper_modules_stay_at_the_top():
    grouped = {}
    for subpackage in SUBPACKAGES:
        assert (PACKAGE_DIR / subpackage / "__init__.py").is_file(), subpackage
        grouped[subpackage] = {path.stem for path in (PACKAGE_DIR / subpackage).glob("*.py")} - {"__init__"}
    assert {"checkpoints", "dataset", "onnx_export", "plots", "text_input", "trainer_hooks"} <= grouped["runtime"]
    assert {"config", "corpus", "model"} <= grouped["pretraining"]
    top_level = {path.stem for path in _paper_modules()}
    assert {"durator", "flows", "memory_bank", "soft_dtw", "losses", "alignment", "training_stages"} <= top_level
    assert not top_level & grouped["runtime"], "a runtime module is back among the paper's modules"


@pytest.mark.parametrize("path", _paper_modules(), ids=lambda path: path.name)
def test_paper_modules_import_nothing_from_runtime_or_pretraining(path):
    module, imports = _imports_of(path)
    forbidden = {name for name in imports for sub in SUBPACKAGES if _is_within(name, f"{PACKAGE}.{sub}")}
    assert forbidden == set(), f"{module} imports {sorted(forbidden)}"


def test_no_layer_imports_the_naturalspeech_model():
    offenders = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module, imports = _imports_of(path)
        hits = {name for name in imports if _is_within(name, MODEL_MODULE)}
        if hits:
            offenders[module] = sorted(hits)
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        "from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError",
        "import TTS.tts.layers.naturalspeech.pretraining.model",
        "from TTS.tts.layers.naturalspeech import runtime",
        "from .pretraining import config",
        "def later():\n    from .runtime.plots import plot_training_figures\n",
    ],
)
def test_the_check_sees_every_form_of_import(source):
    imports = imported_modules(source, f"{PACKAGE}.durator")
    assert any(_is_within(name, f"{PACKAGE}.{sub}") for name in imports for sub in SUBPACKAGES), imports


def test_relative_imports_of_a_package_init_start_at_the_package():
    assert f"{PACKAGE}.runtime" in imported_modules("from . import runtime", PACKAGE, is_package=True)
