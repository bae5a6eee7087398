# Fashion-MNIST as the ImageNet-style PNG tree written by tools/prepare_data.py
# (data/fashion_mnist/{train,val}/<class>/<index>.png, meta/{train,val}.txt).  It is laid out like
# ImageNet, so mmpretrain's `ImageNet` dataset and our ImageNet pipelines read it unchanged: only
# `data_root` (and, for nice class names, `metainfo`) differ from an ImageNet config.
fmnist_data_root = 'data/fashion_mnist/'
fmnist_metainfo = dict(classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                                'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'))
