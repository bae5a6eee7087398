from .features import extract_features, pool_feature
from .knn import knn_classify, knn_evaluate, knn_neighbours, knn_scores

__all__ = ['extract_features', 'knn_classify', 'knn_evaluate', 'knn_neighbours', 'knn_scores',
           'pool_feature']
