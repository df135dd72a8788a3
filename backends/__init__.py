"""backends: RAM, synthetic files, and (to come) ext2, tar and passthrough."""

__all__: list[str] = []
