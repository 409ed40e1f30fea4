"""The package's version (``papi_sandbox.__version__``), in a module of its own so that the
modules that print it (the OpenAPI document) need not import the package's public names."""

__version__ = "0.1.0"
