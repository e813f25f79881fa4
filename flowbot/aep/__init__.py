"""The Flow Service boundary: the only code that imports requests."""
