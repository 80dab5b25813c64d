"""The package version, in a module of its own: any module can import it without importing
the package's API (``vidcolour/__init__.py`` imports the Colouriser, which imports most of the
package)."""

__version__ = "0.1.0"
