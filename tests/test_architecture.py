"""The package's structure, as the README's package map states it: each folder is a layer and
lower layers never import higher ones; no import cycles; imports sit at the top of modules
(the CLI's per-command imports and optional heavy packages, each with a comment, excepted);
inference runs without loading any training module; recipe choices are the registries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import densemarks

PACKAGE = Path(densemarks.__file__).parent
# Bottom to top. Modules of one layer may import each other and anything below.
LAYERS = {"core": 0, "data": 1, "analysis": 2, "models": 3, "recipes": 4, "inference": 5,
          "training": 6, "photos": 6, "video": 7, "cli": 8, "__main__": 8}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported densemarks module or third-party name, line, at module level) for each import."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "densemarks" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(n, node.lineno, id(node) in top) for n in names]
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "densemarks" else None


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The densemarks module an import names (`densemarks.x.y` may be a module or a name in x)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name if name.startswith("densemarks.") else None


def test_every_module_belongs_to_a_layer():
    assert [m for m in _modules() if m != "densemarks" and _layer(m) is None] == []


def test_lower_layers_never_import_higher_ones():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for name, line, _ in _imports(path):
            target = _resolve(name, modules)
            if target is None or _layer(module) is None:
                continue
            # photos and video (inference on the user's pictures) never load training
            sideways = {module.split(".")[1], target.split(".")[1]} in ({"training", "photos"}, {"training", "video"})
            if _layer(target) > _layer(module) or sideways:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert wrong == []


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {t for n, _, top in _imports(p) if top and (t := _resolve(n, modules)) and t != m}
             for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_imports_sit_at_the_top():
    """Inside functions only: the CLI's commands (so --help stays fast), and third-party
    packages that are optional or heavy, each with a comment saying which."""
    wrong = []
    for module, path in _modules().items():
        lines = path.read_text().splitlines()
        for name, line, top in _imports(path):
            if top or module == "densemarks.cli":
                continue
            if name.startswith("densemarks") or "#" not in lines[line - 1]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {name} inside a function")
    assert wrong == []


def test_inference_and_photos_load_no_training_module():
    script = ("import sys\n"
              "import densemarks.inference.predict, densemarks.inference.export, densemarks.inference.ensemble\n"
              "import densemarks.inference.submission, densemarks.photos.predictor, densemarks.photos.evaluate\n"
              "import densemarks.video.run, densemarks.video.tracker\n"
              "print(sorted(m for m in sys.modules if m.startswith('densemarks.training')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_help_loads_no_model_code():
    script = ("import sys\nfrom densemarks import cli\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'cv2', 'numba')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_recipe_choices_are_the_registries():
    from densemarks.data.loader import SAMPLERS
    from densemarks.models.heads import HEADS
    from densemarks.models.losses import LOSSES
    from densemarks.models.optim import MODES, OPTIMIZERS, SCHEDULERS
    from densemarks.recipes.config import CHOICES

    for key, registry in {"head": HEADS, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                          "mode": MODES, "sampler": SAMPLERS}.items():
        assert CHOICES[key] is registry, key
