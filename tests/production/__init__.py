"""The production profile's tests. A package, so that its conftest.py does not shadow tests/conftest.py (which
the other test modules import as `conftest`)."""
