"""The wire: 9P2000.L messages as values, their codec, framing and numbers (sans-I/O)."""

__all__: list[str] = []
