"""Entry points behind the thin CLIs in ``tools/`` (importable, so tests need no subprocess)."""
