"""Small, locally built material for examples, docs and tests (nothing is downloaded)."""
