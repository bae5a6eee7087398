"""Every converter refuses an unrecognised file, a truncated file and a pickle that would run
code, with a message that says why, and leaves no output (nor a partial) file."""
import os
import os.path as osp

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import mmssl_ext.zoo  # noqa: F401  registers the schemes
from mmssl_ext.cli.convert import dino_main, export_main, mmselfsup_main, vissl_main
from mmssl_ext.zoo.common import CheckpointLoadError
from tests.zoo.helpers import tv_resnet, vissl_checkpoint

MAINS = {'vissl': vissl_main, 'dino': dino_main, 'mmselfsup': mmselfsup_main,
         'export': export_main}


class _RunsCode:
    """Unpickling this runs code (writes the marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").write("ran")', )


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    files = {}
    files['unrecognised'] = str(d / 'unrecognised.pth')
    torch.save({'state_dict': {'encoder.weight': torch.zeros(3)}, 'epoch': 1},
               files['unrecognised'])
    good = str(d / 'good.torch')
    torch.save(vissl_checkpoint(tv_resnet(18)), good)
    files['truncated'] = str(d / 'truncated.torch')
    with open(good, 'rb') as f, open(files['truncated'], 'wb') as g:
        g.write(f.read()[:os.path.getsize(good) // 2])
    files['runs_code'] = str(d / 'runs_code.pth')
    marker = str(d / 'code_ran')
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)},
                'payload': _RunsCode(marker)}, files['runs_code'])
    return files, marker


MESSAGES = {'unrecognised': r'Accepted layouts|is not an mmpretrain ResNet',
            'truncated': r'truncated or not a torch checkpoint',
            'runs_code': r'outside the weights-only allow-list'}


@pytest.mark.parametrize('kind', sorted(MESSAGES))
@pytest.mark.parametrize('tool', sorted(MAINS))
def test_cli_refuses(bad_files, tmp_path, tool, kind):
    files, marker = bad_files
    out = str(tmp_path / 'out' / 'converted.pth')
    with pytest.raises(SystemExit, match=MESSAGES[kind]) as exc:
        MAINS[tool]([files[kind], out])
    assert str(exc.value).startswith('error: ')
    assert not osp.exists(marker), 'the pickled code ran'
    assert not osp.exists(out)
    assert not osp.isdir(osp.dirname(out)) or not os.listdir(osp.dirname(out))


@pytest.mark.parametrize('scheme', ['vissl://', 'dino://', 'mmselfsup://'])
def test_schemes_refuse(bad_files, scheme):
    files, marker = bad_files
    with pytest.raises(CheckpointLoadError, match='allow-list'):
        _load_checkpoint(scheme + files['runs_code'])
    with pytest.raises(CheckpointLoadError, match='truncated'):
        _load_checkpoint(scheme + files['truncated'])
    with pytest.raises(ValueError, match='Accepted layouts'):
        _load_checkpoint(scheme + files['unrecognised'])
    assert not osp.exists(marker)


def test_trust_flag_loads_a_trusted_file_with_more_objects(tmp_path):
    """A source whose format holds other objects (here a SimpleNamespace config) loads only
    with --trust-pickled-code, which warns."""
    from types import SimpleNamespace
    ckpt = vissl_checkpoint(tv_resnet(18))
    ckpt['config'] = SimpleNamespace(MODEL='resnet')
    src, out = str(tmp_path / 'with_config.torch'), str(tmp_path / 'out.pth')
    torch.save(ckpt, src)
    with pytest.raises(SystemExit, match='allow-list'):
        vissl_main([src, out])
    assert not osp.exists(out)
    with pytest.warns(UserWarning, match='code in the file runs'):
        vissl_main([src, out, '--trust-pickled-code'])
    assert 'backbone.conv1.weight' in torch.load(out, weights_only=True)['state_dict']
