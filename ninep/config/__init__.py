"""The configuration: the TOML file, its policies and TLS settings, made live; the embedded default."""

__all__: list[str] = []
