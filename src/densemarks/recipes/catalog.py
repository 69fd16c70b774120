"""The named recipes: the YAML files beside this module (light: the CLI lists them for --help)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def recipe_dir() -> Path:
    return Path(str(resources.files("densemarks.recipes")))


# Recipes under an earlier name: the old name still loads the recipe it became.
RENAMED = {"heatmap-cpu": "accurate-cpu"}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))
