# A plain folder of unlabeled images as the training set: mmpretrain's CustomDataset with
# with_label=False reads every image under data_root (any nesting of sub-folders, the extensions
# below) or the list tools/make_file_list.py wrote (ann_file, paths relative to data_root).
# mmengine forbids a key in two bases, so these are variables a method config applies, as in
# configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py:
#   train_dataloader = dict(dataset=dict(_delete_=True, **_base_.folder_dataset,
#                                        pipeline=train_pipeline))
# Point a config at your folder (and, optionally, at its list) from the command line:
#   --cfg-options train_dataloader.dataset.data_root=DIR [train_dataloader.dataset.ann_file=LIST]
# Sizes that follow from the data (memory banks, NCE's num_data, cluster memories) are left
# unset: the runner takes them from the number of images found.
folder_data_root = 'data/my_images/'  # a placeholder: override it as above
folder_extensions = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
folder_dataset = dict(
    type='CustomDataset',
    data_root=folder_data_root,
    data_prefix='',
    ann_file='',  # '' scans the folder; a list file skips the scan
    with_label=False,
    extensions=folder_extensions)

# Evaluation needs labels, so it is off (data_root=None) until it points at a small labelled
# folder with one sub-folder per class under DIR/train and DIR/val:
#   --cfg-options knn_eval.data_root=DIR          (tools/knn_eval.py, tools/analysis/*.py)
# or tools/knn_eval.py ... --train-folder DIR/train --val-folder DIR/val
folder_knn_eval = dict(
    data_root=None,
    train_prefix='train',
    val_prefix='val',
    img_size=32,  # the test pipeline: resize to img_size x img_size, or with crop_ratio
    crop_ratio=None,  # the short side to img_size / crop_ratio, centre crop (ImageNet: 0.875)
    batch_size=256,
    num_workers=2,
    ks=(20, 200),
    temperature=0.07)
