"""The Flow Service + IMS simulator: the same API on loopback, from a scenario."""
