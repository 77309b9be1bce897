"""The local trace viewer behind ``tracemux ui``: a small read-only web server over a store.

>>> from tracemux.destinations import SQLiteStore
>>> from tracemux.ui import UIServer
>>> with UIServer(SQLiteStore("traces.db"), port=0) as server:  # doctest: +SKIP
...     print(server.url)
"""

from tracemux.ui.server import UIServer

__all__ = ["UIServer"]
