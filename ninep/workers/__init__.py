"""Worker processes behind one listening address: a supervisor binds, N workers serve."""

from ninep.workers.count import MAX_WORKERS, worker_count

__all__ = ["MAX_WORKERS", "worker_count"]
