"""Helpers for the demo, the tests and the benchmark: real registries, a
private Redis, images built on the spot. Not imported by the product."""
