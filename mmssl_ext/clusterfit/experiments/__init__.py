"""Research experiments built on ClusterFit (not part of :mod:`mmssl_ext.clusterfit`'s API)."""
