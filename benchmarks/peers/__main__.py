"""``python -m benchmarks.peers``: the peer comparison's command line."""
from benchmarks.peers.harness import main

main()
