"""The user data stream: the in-process event hub (:mod:`.hub`), Binance's events built from
committed journal entries (:mod:`.events`), listen keys and the WebSocket endpoints."""
