"""``ninep mount``: placeholder replaced below."""
from typing import Any
__all__ = ["add_mount_command"]
def add_mount_command(subparsers: Any) -> None:
    pass
