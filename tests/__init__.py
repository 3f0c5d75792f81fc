"""The fast test suite (a regular package: ppi-python installs a top-level ``tests`` package that would shadow a namespace one)."""
