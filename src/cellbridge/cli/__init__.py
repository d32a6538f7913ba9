"""The ``cellbridge`` command line."""
