"""Atomic checkpoints: a write interrupted half-way leaves the previous checkpoint and
``last_checkpoint`` usable; normal runs still resume from the atomically written files.

The interruption is real, not mocked: the process's file-size limit (``RLIMIT_FSIZE``) is set
below the checkpoint's size, so the kernel stops the very ``write`` that stores the checkpoint
after part of its bytes (``EFBIG`` in-process, where python ignores ``SIGXFSZ``; in a
subprocess with ``SIGXFSZ``'s default action the process is killed mid-write and no ``finally``
runs).  The same interruption, applied to mmengine's own ``CheckpointHook``, documents why this
is needed: a truncated ``iter_4.pth`` and, with ``max_keep_ckpts=1``, the previous checkpoint
already deleted.  Call :func:`use_atomic_checkpoints` after ``merge_args`` (a no-op once
``merge_args`` applies it itself).
"""
import contextlib
import errno
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.atomic_checkpoint import (ATOMIC_BACKEND, PARTIAL_SUFFIX,
                                                AtomicCheckpointHook, AtomicLocalBackend,
                                                atomic_write, remove_partial_files,
                                                use_atomic_checkpoints)
from mmssl_ext.utils.checkpoint import CheckpointLoadError, load_checkpoint_safe
from tests.helpers import REPO

resource = pytest.importorskip('resource')
pytestmark = pytest.mark.skipif(not hasattr(signal, 'SIGXFSZ'), reason='POSIX only')

PIRL_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')


def tiny_pirl_options(tree: str, max_iters: int, interval: int = 2, max_keep: int = 1) -> list:
    """The Fashion-MNIST PIRL config shrunk to a seconds-long run (tiny backbone and bank)."""
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'model.memory_bank.length=24',
            'model.memory_bank.num_negatives=16', 'model.backbone.base_channels=8',
            'model.backbone.stem_channels=8', 'model.neck.in_channels=64',
            'model.transform_neck.in_channels=64', f'train_cfg.max_iters={max_iters}',
            f'default_hooks.checkpoint.interval={interval}',
            f'default_hooks.checkpoint.max_keep_ckpts={max_keep}']


def build(tree: str, work: str, max_iters: int, resume: bool = False, atomic: bool = True):
    argv = [PIRL_CFG, '--work-dir', work] + (['--resume'] if resume else []) + \
        ['--cfg-options', *tiny_pirl_options(tree, max_iters)]
    args = train_api.parse_args(argv)
    cfg = train_api.merge_args(train_api.load_config(args.config), args)
    if atomic:
        use_atomic_checkpoints(cfg)
    else:  # mmengine's own hook, whatever merge_args chose
        cfg.default_hooks.checkpoint.type = 'CheckpointHook'
    return train_api.build_runner(cfg)


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail with EFBIG (SIGXFSZ ignored) while the block runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def read_bytes(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def last_checkpoint(work: str) -> str:
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read().strip()


def partial_files(work: str) -> list:
    return sorted(n for n in os.listdir(work) if n.endswith(PARTIAL_SUFFIX))


def assert_previous_checkpoint_survived(work: str, before: bytes) -> None:
    ckpt2 = osp.join(work, 'iter_2.pth')
    assert read_bytes(ckpt2) == before, 'the previous checkpoint changed'
    assert load_checkpoint_safe(ckpt2)['meta']['iter'] == 2
    assert not osp.exists(osp.join(work, 'iter_4.pth')), 'a truncated iter_4.pth was left'
    assert last_checkpoint(work) == ckpt2
    assert load_checkpoint_safe(last_checkpoint(work))['meta']['iter'] == 2


def resume_to_4_and_check(tree: str, work: str) -> None:
    runner = build(tree, work, max_iters=4, resume=True)
    runner.train()
    assert runner.iter == 4
    ckpt4 = osp.join(work, 'iter_4.pth')
    assert last_checkpoint(work) == ckpt4
    ckpt = load_checkpoint_safe(ckpt4)
    assert ckpt['meta']['iter'] == 4
    assert ckpt['message_hub']['runtime_info']['keep_ckpt_ids'] == [4]
    assert not osp.exists(osp.join(work, 'iter_2.pth')), 'max_keep_ckpts=1 not applied'
    assert partial_files(work) == []


# ------------------------------------------------------------------------------ unit


def test_atomic_write_keeps_old_file_when_the_write_fails(tmp_path):
    path = str(tmp_path / 'iter_1.pth')
    atomic_write(path, b'a' * 1000)
    assert read_bytes(path) == b'a' * 1000
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # like open(path, 'wb')
    with file_size_limit(5000), pytest.raises(OSError) as e:
        atomic_write(path, b'b' * 20000)
    assert e.value.errno == errno.EFBIG
    assert read_bytes(path) == b'a' * 1000
    assert os.listdir(tmp_path) == ['iter_1.pth']  # the temporary file is gone too
    atomic_write(path, b'c' * 20000)
    assert read_bytes(path) == b'c' * 20000
    assert os.listdir(tmp_path) == ['iter_1.pth']


def test_backend_and_partial_file_cleanup(tmp_path):
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend=ATOMIC_BACKEND))
    assert isinstance(backend, AtomicLocalBackend)
    path = backend.join_path(str(tmp_path), 'sub', 'x.pth')
    backend.put(b'123', path)  # creates the directory, like LocalBackend.put
    backend.put_text('last', str(tmp_path / 'last_checkpoint'))
    assert backend.get(path) == b'123' and backend.get_text(str(tmp_path / 'last_checkpoint')) \
        == 'last'
    stale = tmp_path / f'.iter_9.pth.0a1b2c3d{PARTIAL_SUFFIX}'
    stale.write_bytes(b'half')
    (tmp_path / 'keep.partial.txt').write_text('not ours')
    assert remove_partial_files(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == ['keep.partial.txt', 'last_checkpoint', 'sub']


def test_use_atomic_checkpoints_on_configs(tiny_tree):
    def cfg_with(ckpt):
        return Config(dict(default_hooks=dict(checkpoint=ckpt)))

    from mmengine.hooks import CheckpointHook
    for htype in ('CheckpointHook', 'mmpretrain.CheckpointHook', 'mmdet.CheckpointHook',
                  CheckpointHook):
        cfg = use_atomic_checkpoints(cfg_with(dict(type=htype, interval=5, max_keep_ckpts=2)))
        assert cfg.default_hooks.checkpoint == dict(type='AtomicCheckpointHook', interval=5,
                                                    max_keep_ckpts=2)
        assert use_atomic_checkpoints(cfg).default_hooks.checkpoint.type == \
            'AtomicCheckpointHook'  # idempotent
    for ckpt in (dict(type='CheckpointHook', backend_args=dict(backend='petrel')),
                 dict(type='CheckpointHook', out_dir='s3://bucket/ckpts'),
                 dict(type='CheckpointHook', file_client_args=dict(backend='disk')),
                 dict(type='SomeOtherCheckpointHook'), None):
        assert use_atomic_checkpoints(cfg_with(ckpt)).default_hooks.checkpoint == ckpt
    assert use_atomic_checkpoints(Config(dict())).to_dict() == {}

    # the hook built from the config writes through the atomic backend; the rest is unchanged
    hook = AtomicCheckpointHook(interval=3, by_epoch=False, max_keep_ckpts=2)
    assert hook.atomic and hook.backend_args == dict(backend=ATOMIC_BACKEND)
    assert hook.filename_tmpl == 'iter_{}.pth' and hook.max_keep_ckpts == 2
    assert not AtomicCheckpointHook(out_dir='s3://b/c').atomic
    assert not AtomicCheckpointHook(backend_args=dict(backend='local')).atomic

    # the real config through tools/train.py's merge step
    args = train_api.parse_args([PIRL_CFG, '--cfg-options', *tiny_pirl_options(tiny_tree, 2)])
    cfg = use_atomic_checkpoints(train_api.merge_args(train_api.load_config(PIRL_CFG), args))
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 1


# ------------------------------------------------------------------------------ runs


def test_interrupted_checkpoint_write_keeps_previous_checkpoint(tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    runner = build(tiny_tree, work, max_iters=2)
    runner.train()
    assert any(isinstance(h, AtomicCheckpointHook) and h.atomic for h in runner.hooks)
    ckpt2 = osp.join(work, 'iter_2.pth')
    before = read_bytes(ckpt2)
    assert last_checkpoint(work) == ckpt2

    # resume and train to 4; the write of iter_4.pth fails half-way (disk "full")
    runner = build(tiny_tree, work, max_iters=4, resume=True)
    with file_size_limit(len(before) // 2), pytest.raises(OSError) as e:
        runner.train()
    assert e.value.errno == errno.EFBIG
    assert runner.iter == 3  # the failure came while saving after iteration 4
    assert_previous_checkpoint_survived(work, before)
    assert partial_files(work) == []  # the failed write cleaned up after itself

    resume_to_4_and_check(tiny_tree, work)


_KILLED_CHILD = textwrap.dedent('''
    import resource, signal, sys
    sys.path.insert(0, {repo!r})
    import mmengine.runner.loops as loops
    from tests.conftest import _NoSleepTime
    loops.time = _NoSleepTime()
    from tests.engine.test_atomic_checkpoint import build
    runner = build({tree!r}, {work!r}, max_iters=4, resume=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # python ignores it at start-up
    runner.train()  # SIGXFSZ (default action) kills the process in the middle of iter_4.pth
    print('NOT KILLED')
''')


def test_process_killed_mid_write_keeps_previous_checkpoint(tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    build(tiny_tree, work, max_iters=2).train()
    before = read_bytes(osp.join(work, 'iter_2.pth'))

    code = _KILLED_CHILD.format(repo=REPO, tree=tiny_tree, work=work, limit=len(before) // 2)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGXFSZ, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert 'Saving checkpoint at 4 iterations' in proc.stdout + proc.stderr

    assert_previous_checkpoint_survived(work, before)
    leftovers = partial_files(work)  # no clean-up ran: the half-written temporary file is there
    assert len(leftovers) == 1 and leftovers[0].startswith('.iter_4.pth.')
    assert 0 < os.path.getsize(osp.join(work, leftovers[0])) <= len(before) // 2

    resume_to_4_and_check(tiny_tree, work)  # removes the leftover in before_train


def test_mmengine_checkpoint_hook_is_not_atomic(tiny_tree, tmp_path):
    """Why this module exists: the same interruption with mmengine 0.10.7's CheckpointHook
    leaves a truncated iter_4.pth and, with max_keep_ckpts=1, no loadable checkpoint at all."""
    work = str(tmp_path / 'work')
    build(tiny_tree, work, max_iters=2, atomic=False).train()
    size = os.path.getsize(osp.join(work, 'iter_2.pth'))
    runner = build(tiny_tree, work, max_iters=4, resume=True, atomic=False)
    with file_size_limit(size // 2), pytest.raises(OSError):
        runner.train()
    assert not osp.exists(osp.join(work, 'iter_2.pth'))  # deleted before the new one was written
    assert os.path.getsize(osp.join(work, 'iter_4.pth')) == size // 2  # truncated in place
    with pytest.raises(CheckpointLoadError):
        load_checkpoint_safe(osp.join(work, 'iter_4.pth'))
    with pytest.raises(FileNotFoundError):
        load_checkpoint_safe(last_checkpoint(work))  # still names iter_2.pth


class _FakeRunner:
    """What CheckpointHook uses of a runner; ``save_checkpoint`` writes a small file or, with
    ``fail``, raises like an interrupted write."""

    def __init__(self, work_dir: str) -> None:
        from mmengine.logging import MessageHub, MMLogger
        self.work_dir, self.iter, self.epoch, self.fail = work_dir, 0, 0, False
        # a fresh hub per runner: MessageHub instances are global by name, and an id() of a
        # collected runner can be reused, which once handed a test an earlier test's hub
        self.message_hub = MessageHub.get_instance(f'atomic-ckpt-test-{uuid.uuid4().hex}')
        self.logger = MMLogger.get_current_instance()
        self.saved = []

    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True,
                        backend_args=None):
        if self.fail:
            raise OSError(errno.ENOSPC, 'No space left on device')
        backend = get_file_backend(out_dir, backend_args=backend_args)
        backend.put(f'{filename} {meta}'.encode(), backend.join_path(out_dir, filename))
        self.saved.append(filename)


def test_old_checkpoints_removed_only_after_the_new_one_is_written(tmp_path):
    work = str(tmp_path)
    runner = _FakeRunner(work)
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1, save_best='acc',
                                rule='greater')
    hook.before_train(runner)
    hook._save_checkpoint(runner)  # iter_1.pth
    assert sorted(os.listdir(work)) == ['iter_1.pth', 'last_checkpoint']

    runner.iter, runner.fail = 1, True
    with pytest.raises(OSError):
        hook._save_checkpoint(runner)  # iter_2.pth fails: iter_1.pth must stay
    assert sorted(os.listdir(work)) == ['iter_1.pth', 'last_checkpoint']
    assert last_checkpoint(work) == osp.join(work, 'iter_1.pth')
    # ... and the bookkeeping is as before the failed save
    assert runner.message_hub.get_info('keep_ckpt_ids') == [1] and list(hook.keep_ckpt_ids) == [1]
    assert hook.last_ckpt == runner.message_hub.get_info('last_ckpt') == \
        osp.join(work, 'iter_1.pth')

    runner.fail = False
    hook._save_checkpoint(runner)  # iter_2.pth written, then iter_1.pth removed
    assert sorted(os.listdir(work)) == ['iter_2.pth', 'last_checkpoint']
    assert last_checkpoint(work) == osp.join(work, 'iter_2.pth')
    assert runner.message_hub.get_info('keep_ckpt_ids') == [2]

    # the best checkpoint: the previous one is removed after the new one is written
    hook.after_val_epoch(runner, dict(acc=0.5))
    assert 'best_acc_iter_1.pth' in os.listdir(work)
    runner.iter, runner.fail = 3, True
    with pytest.raises(OSError):
        hook.after_val_epoch(runner, dict(acc=0.9))
    assert 'best_acc_iter_1.pth' in os.listdir(work)
    assert runner.message_hub.get_info('best_score') == 0.5
    assert hook.best_ckpt_path == runner.message_hub.get_info('best_ckpt') == \
        osp.join(work, 'best_acc_iter_1.pth')
    runner.fail = False
    hook.after_val_epoch(runner, dict(acc=0.9))
    files = sorted(os.listdir(work))
    # mmengine re-saves the step's checkpoint after a new best (max_keep_ckpts=1: iter_2 goes)
    assert files == ['best_acc_iter_3.pth', 'iter_3.pth', 'last_checkpoint']
    assert runner.message_hub.get_info('best_score') == 0.9
    assert last_checkpoint(work) == osp.join(work, 'iter_3.pth')
    assert not hasattr(hook.file_backend, 'pending')  # the real backend is back


def _hub_state(runner) -> dict:
    return {k: v for k, v in runner.message_hub.runtime_info.items()
            if k in ('keep_ckpt_ids', 'last_ckpt') or k.startswith('best_')}


@pytest.mark.parametrize('max_keep', [-1, 1, 2])
def test_same_files_and_bookkeeping_as_mmengine(tmp_path, max_keep):
    """Without failures the hook leaves exactly what mmengine's CheckpointHook leaves."""
    from mmengine.hooks import CheckpointHook
    results = []
    for cls in (CheckpointHook, AtomicCheckpointHook):
        work = str(tmp_path / cls.__name__)
        os.makedirs(work)
        runner = _FakeRunner(work)
        hook = cls(interval=1, by_epoch=False, max_keep_ckpts=max_keep,
                   save_best=['acc', 'loss'], rule=['greater', 'less'])
        hook.before_train(runner)
        for it, (acc, loss) in enumerate([(0.1, 3.), (0.3, 2.), (0.2, 2.5), (0.4, 1.)]):
            runner.iter = it
            hook._save_checkpoint(runner)
            hook.after_val_epoch(runner, dict(acc=acc, loss=loss))
        state = {k: (v.replace(work, '<work>') if isinstance(v, str) else v)
                 for k, v in _hub_state(runner).items()}
        results.append((sorted(os.listdir(work)), state, runner.saved,
                        last_checkpoint(work).replace(work, '<work>')))
    assert results[0] == results[1]
