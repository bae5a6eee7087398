"""A hook for the DDP tests: every rank dumps its memory bank after training."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssl_ext.registry import HOOKS


@HOOKS.register_module()
class DumpMemoryBankHook(Hook):

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save(model.memory_bank.feats.clone(),
                   osp.join(runner.work_dir, f'bank_rank{get_rank()}.pth'))
