"""Protocols: experiment procedures, the simulated bench and the command line."""
