"""Built-in run configs, shipped as package data (``mechrare presets`` lists them)."""
