"""Measurement harness of mmssl_ext (not part of the library or the test run): feature quality at
the same compute, the lightly peers, training speed and micro-benchmarks.  Run from the repository
root as ``python -m benchmarks.<name>``; ``benchmarks/README.md`` lists them."""
