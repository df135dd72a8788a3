"""Mounting with the kernel's v9fs: ``ninep mount`` and mount.ninep for fstab lines."""

__all__: list[str] = []
