"""Tests of the client library and the client CLI verbs."""
