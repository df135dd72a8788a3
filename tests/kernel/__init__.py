"""The Linux kernel conformance suite: Debian's kernel under QEMU mounting our server."""
