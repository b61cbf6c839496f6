"""Instrument drivers: the wire-level end that talks to real hardware.

Start with :func:`insitu.instruments.resources.open_potentiostat`, which picks the driver from
a resource string, and the :class:`~insitu.instruments.potentiostat.Potentiostat` interface
that every driver implements. The drivers that exchange text lines over VISA derive from
:class:`~insitu.instruments.base.Instrument` and keep only their instrument's commands.
"""
