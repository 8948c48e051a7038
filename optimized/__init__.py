"""Implementations registered against the reference ops; importing this package registers them all."""
