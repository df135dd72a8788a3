"""An overlay mount: a writable upper backend over a read-only lower one, like Linux overlayfs.

Lookups try the upper layer, then the lower; a directory in both is merged;
reads of a file only in the lower layer go to it. The first change to a lower
file (write, truncate, chmod/chown/utimes, xattr, link, rename) copies it up:
data in chunks (holes stay holes), owner, mode, times and xattrs, parent
directories first. The copy is built in the upper root's hidden work
directory ``.overlay-work`` and renamed into place, so no half copy is ever
visible, even after a crash. A copied-up file keeps its lower inode number
(so the client's qid.path does not change); upper-only files get their upper
number with bit 47 set, so the two never collide within 48 bits. A fresh
(empty) upper root takes the lower root's owner, mode, times and xattrs, so
the overlay's root looks like the image's (overlayfs shows the upper's).

Markers in the upper layer are overlayfs's own (with ``userxattr``), so they
survive a restart with a passthrough upper and are hidden from clients:

- whiteout (a deleted lower name): a character device 0/0 of that name;
  clients cannot make one (mknod of 0/0 answers EPERM). A non-root server
  needs Linux 5.8 or later to make them in a host directory.
- opaque directory (made over a whiteout; the lower one stays hidden):
  ``user.overlay.opaque = "y"`` on the upper directory, so the upper layer
  must support user xattrs (RAM does) for that case.
- copy-up origin: ``user.overlay.ninep.origin`` holds the overlay inode
  number, read when a restarted overlay finds its upper layer not empty (the
  running instance keeps them in memory; an upper without xattrs loses them
  at a restart, and copied-up files then get upper-only numbers).
- ``user.overlay.*`` and ``trusted.overlay.*`` are hidden and refused (EPERM).

Known differences: renaming a directory that exists in the lower layer
answers EXDEV (overlayfs without ``redirect_dir``: ``mv`` falls back to copy
and delete); hard links within the lower layer are broken apart on copy-up
(overlayfs without ``index``); merged directories whose lower side has
subdirectories report nlink 1, as overlayfs does.

Options: ``lower`` (required) and ``upper`` (default ``ram``), each
``KIND[:SOURCE]`` or a table ``{backend, source, options}``; ``share_lower``
(default true). The lower layer is never written, so overlays that name the
same lower share one instance, opened by the first and closed by the last
(``scope = "connection"``: one image parsed once, a private upper per client);
``open_backend(..., shared_lower=backend)`` takes one the caller opened.
"""

from .backend import OverlayBackend
from .factory import open_backend, parse_layer
from .nodes import OverlayDir, OverlayHandle, OverlayNode

__all__ = ["OverlayBackend", "OverlayDir", "OverlayHandle", "OverlayNode", "open_backend",
           "parse_layer"]
