"""KNNEvalHook evaluates during training and logs what a direct evaluation gives."""
from mmengine.config import Config

from mmssl_ext.cli import train as train_api
from mmssl_ext.evaluation import extract_features, knn_evaluate
from tests.helpers import MOCO_FMNIST_CFG, tiny_moco_options


def test_knn_hook_logs_direct_result(tiny_tree, tmp_path):
    work = str(tmp_path / 'w')
    args = train_api.parse_args([MOCO_FMNIST_CFG, '--work-dir', work, '--cfg-options',
                                 *tiny_moco_options(tiny_tree, work, max_iters=3,
                                                    ckpt_interval=3)])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    knn = cfg.knn_eval
    cfg.custom_hooks = [dict(type='KNNEvalHook', interval=2, by_epoch=False, ks=(3, 5),
                             train_dataloader=knn.train_dataloader,
                             val_dataloader=knn.val_dataloader)]
    runner = train_api.build_runner(cfg)
    hook = [h for h in runner.hooks if type(h).__name__ == 'KNNEvalHook'][0]
    calls = []
    orig = hook.evaluate

    def counting(r):
        calls.append(r.iter)
        return orig(r)

    hook.evaluate = counting
    runner.train()
    # after iteration 2 (interval) and at the end (iteration 3)
    assert calls == [1, 2]
    # the logged numbers are exactly those of the final backbone
    train_f, train_y = extract_features(runner.model, runner.build_dataloader(
        knn.train_dataloader), progress=False)
    val_f, val_y = extract_features(runner.model, runner.build_dataloader(
        knn.val_dataloader), progress=False)
    direct = knn_evaluate(train_f, train_y, val_f, val_y, ks=(3, 5))
    assert hook.last_results == direct
    for key, value in direct.items():
        assert runner.message_hub.get_scalar(f'knn/{key}').current() == value
    assert train_f.shape == (24, 512) and val_f.shape == (12, 512)
