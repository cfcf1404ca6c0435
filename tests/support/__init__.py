"""Test support that is no part of any app package: demo projects, scratch databases, servers."""
