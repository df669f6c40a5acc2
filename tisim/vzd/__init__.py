"""Simulated VZD: the project's VZD schema, an LDIF generator and a private slapd runner."""
