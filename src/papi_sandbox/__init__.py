"""papi-sandbox: Binance's Portfolio Margin API (PAPI), self-hosted over a double-entry ledger.

The public surface: :func:`create_app` builds the ASGI app, :class:`Settings` configures it,
:class:`SQLiteStore` is the default store and :class:`Service` holds the account operations.
"""

from papi_sandbox.api.app import create_app
from papi_sandbox.service import Service
from papi_sandbox.settings import Settings
from papi_sandbox.store.sqlite import SQLiteStore
from papi_sandbox.version import __version__

__all__ = ["SQLiteStore", "Service", "Settings", "__version__", "create_app"]
