"""Simulators: the virtual cell, the simulation clock and the instrument emulators.

Emulators are servers on 127.0.0.1 that speak real instrument protocols; drivers from
:mod:`insitu.instruments` reach them only over real transports (TCP, pseudo-terminals).
"""
