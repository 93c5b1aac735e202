"""Sync: the copy engine (engine.py, no Django) and the runner that records a
run in the database around it (runner.py)."""
