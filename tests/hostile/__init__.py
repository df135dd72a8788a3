"""Hostile-client tests: what a client can take from the server, measured on a real process."""
