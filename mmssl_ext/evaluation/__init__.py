from .embedding import embedding_scores, plot_embedding, tsne_embedding, umap_available
from .features import extract_features, pool_feature
from .invariance import invariance_distances, plot_distance_histograms, reference_distances
from .knn import knn_classify, knn_evaluate, knn_neighbours, knn_scores
from .layer_probe import extract_stage_features, linear_probe, probe_stages

__all__ = ['embedding_scores', 'extract_features', 'extract_stage_features',
           'invariance_distances', 'knn_classify', 'knn_evaluate', 'knn_neighbours', 'knn_scores',
           'linear_probe', 'plot_distance_histograms', 'plot_embedding', 'pool_feature',
           'probe_stages', 'reference_distances', 'tsne_embedding', 'umap_available']
