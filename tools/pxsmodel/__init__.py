"""pxsmodel: export, train and evaluate PXS model packages (see docs/model-package.md).

The command-line entry point is tools/pxs-model; the modules here are importable so
that tests and notebooks can reuse the same preprocessing and scoring code.
"""

__version__ = "1.0.0"
