# Fashion-MNIST as the ImageNet-style PNG tree of tools/prepare_data.py: mmpretrain's `ImageNet`
# dataset reads it with only data_root and metainfo changed.
fmnist_data_root = 'data/fashion_mnist/'
fmnist_metainfo = dict(classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                                'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'))
