"""The command-line layer: one module per ``tools/*.py`` script, argparse and printing only, over
the library below (``engine``, ``clusterfit``, ``evaluation``, ``utils``).  Nothing in the
package imports from here."""
