"""The `acr` command's pieces: the parser (arguments.py), shared helpers
(base.py) and one module of handlers per command group. The management
command connected/management/commands/acr.py wires them together."""
