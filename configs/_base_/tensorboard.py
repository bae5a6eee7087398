# TensorBoard logging (mmengine's TensorboardVisBackend; `tensorboard` from requirements.txt):
# the loss terms and learning rate (LoggerHook), the online kNN curve (KNNEvalHook, `knn/...`)
# and, for the analysis tools (layer_probe, svm_eval, invariance, embedding), their figures.
# mmengine forbids one key in two bases and every training config already has a `visualizer`
# (mmpretrain's default runtime), so this base names its backend list on its own; one line in
# the config body switches it on:
#   _base_ = ['../pirl/pirl_r18-w32_1xb64-3000it_fmnist.py', '../_base_/tensorboard.py']
#   visualizer = dict(vis_backends={{_base_.tensorboard_vis_backends}})
# Training writes event files to <work_dir>/<timestamp>/vis_data/, an analysis tool to
# <its --work-dir>/vis_data/; view them with `tensorboard --logdir work_dirs`.
tensorboard_vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
