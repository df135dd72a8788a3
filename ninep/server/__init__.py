"""The server: listeners, one asyncio Protocol per connection, sessions, handlers, Tauth, metrics."""

__all__: list[str] = []
