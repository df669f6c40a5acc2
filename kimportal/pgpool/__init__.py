"""Django's PostgreSQL backend with a pool that drops all its dead connections at once (see base.py)."""
