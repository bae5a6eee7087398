"""t-SNE (and UMAP) pictures of a backbone's features.

See `python tools/analysis/embedding.py -h`.
"""
from mmssl_ext.cli.embedding import main

if __name__ == '__main__':
    main()
