"""End-to-end tests of the ``differad`` command (subprocess)."""
