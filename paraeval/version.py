"""The package version (its own module so that any module can read it without importing
the package facade, which imports the runner lazily)."""

__version__ = "0.1.0"
