"""Recipes: TrainConfig, the named YAML recipes beside this file, key=value overrides."""
