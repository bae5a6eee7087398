"""Checkpoints load through torch's weights-only unpickler with our explicit allow-list."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import mmssl_ext  # noqa: F401
from mmssl_ext.utils import CheckpointLoadError, load_checkpoint_safe, safe_globals


def test_message_hub_state_loads_with_weights_only(tmp_path):
    """The exact objects mmengine 0.10.7 stores (HistoryBuffer of numpy arrays) load safely."""
    hub = MessageHub.get_instance('mmssl_test_safe_load')
    for i in range(5):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', np.float64(0.1))
    hub.update_info('iter', 5)
    ckpt = dict(state_dict={'w': torch.ones(2)}, message_hub=hub.state_dict(),
                meta=dict(epoch=1, iter=5, seed=np.int64(3)))
    path = tmp_path / 'hub.pth'
    torch.save(ckpt, path)
    # torch's own default (weights_only=True on torch >= 2.6) now accepts it, as mmengine calls it
    loaded = torch.load(path, map_location='cpu')
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.current() == pytest.approx(0.2)
    assert loaded['meta']['seed'] == 3
    assert load_checkpoint_safe(path)['message_hub']['runtime_info']['iter'] == 5


def test_allow_list_is_explicit_and_small():
    entries = [g[0] if isinstance(g, tuple) else g for g in safe_globals()]
    names = {getattr(g, '__qualname__', repr(g)) for g in entries}
    assert 'HistoryBuffer' in names
    assert not any('ObjectDType' in n for n in names)  # object arrays stay refused
    assert getattr not in entries  # only a HistoryBuffer-restricted stand-in for getattr
    assert all(getattr(g, '__module__', '').split('.')[0] in ('numpy', 'mmengine', 'mmssl_ext')
               for g in entries)


def test_getattr_only_serves_history_buffer(tmp_path):
    from mmssl_ext.utils.checkpoint import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        _history_buffer_getattr(os, 'system')
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        _history_buffer_getattr(HistoryBuffer, '__init__')
    # a checkpoint that uses builtins.getattr on another allowed object (numpy.ndarray.tofile,
    # which writes files) is refused on load
    import io
    payload = (b'\x80\x02c__builtin__\ngetattr\ncnumpy\nndarray\n'
               b'X\x06\x00\x00\x00tofile\x86R.')
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        torch.load(io.BytesIO(_zip_with_pickle(payload)), weights_only=True)


def _zip_with_pickle(data):
    """A torch zip checkpoint whose data.pkl is ``data``."""
    import io
    import zipfile
    buf = io.BytesIO()
    torch.save({'a': 1}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as z:
        for info in src.infolist():
            content = data if info.filename.endswith('data.pkl') else src.read(info.filename)
            z.writestr(info, content)
    return out.getvalue()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_crafted_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'payload': _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointLoadError, match='evil.pth') as e:
        load_checkpoint_safe(path)
    assert 'allow-list' in str(e.value)
    assert not marker.exists(), 'the pickle payload ran'
    # torch's default load (what mmengine's Runner uses) refuses it as well
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


def test_truncated_and_missing_files_are_named(tmp_path):
    path = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, path)
    data = path.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointLoadError, match='cut.pth.*truncated'):
        load_checkpoint_safe(cut)
    with pytest.raises(FileNotFoundError, match='nothere.pth'):
        load_checkpoint_safe(tmp_path / 'nothere.pth')
