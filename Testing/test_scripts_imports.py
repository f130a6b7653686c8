"""Training and benchmark scripts need torch or MONAI, which the suite does not install, so
they are not run here; but every name they import from TwinTrackLogic must exist, or the
scripts break silently when the core is refactored."""

import ast
import importlib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SCRIPTS = sorted([*REPOSITORY.glob("training/*.py"), *REPOSITORY.glob("benchmarks/*.py"),
                  *REPOSITORY.glob("docs/*.py")])


def _core_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("TwinTrackLogic", "TwinTrackCLI")):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(("TwinTrackLogic", "TwinTrackCLI")):
                    yield alias.name, []


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_script_imports_exist_in_the_core(path):
    for module_name, names in _core_imports(path):
        module = importlib.import_module(module_name)
        missing = [name for name in names if not hasattr(module, name)
                   and importlib.util.find_spec(f"{module_name}.{name}") is None]
        assert missing == [], f"{path.name} imports {missing} from {module_name}, which has no such name"


def test_scripts_were_found():
    assert len(SCRIPTS) >= 5
