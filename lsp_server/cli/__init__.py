"""The `codefill` command line."""
