"""The pinned stack the set-up installs: versions, mmcv's compiled ops, our mmcv source fix."""
import numpy as np
import pytest
import torch


def test_versions_are_the_pinned_ones():
    import mmcv
    import mmdet
    import mmengine
    import mmpretrain
    import torchvision
    assert torch.__version__.split('+')[0] == '2.14.1'
    assert torchvision.__version__.split('+')[0] == '0.29.1'
    assert (mmengine.__version__, mmcv.__version__, mmpretrain.__version__,
            mmdet.__version__) == ('0.10.7', '2.1.0', '1.2.0', '3.3.0')


def test_mmcv_compiled_ops_run():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]  # the overlapping lower-score box is suppressed
    feat = torch.arange(16.).view(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)(feat, rois)
    # one sample per 2x2 bin, at its centre (1,1), (1,3), (3,1), (3,3): values 5, 7, 13, 15
    torch.testing.assert_close(out.flatten(), torch.tensor([5.0, 7.0, 13.0, 15.0]))


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_adjust_hue_negative_factor_on_numpy2(backend):
    """mmcv 2.1.0's adjust_hue crashed on numpy 2 for hue_factor < 0 (np.uint8(-5)); our build
    wraps around like numpy 1 did, so a negative shift is the inverse of the positive one."""
    import mmcv
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (16, 16, 3)).astype(np.uint8)
    down = mmcv.adjust_hue(img, -0.1, backend=backend)
    assert down.shape == img.shape and down.dtype == np.uint8
    assert not np.array_equal(down, img)
    # hue is a circle: shifting by -0.1 then +0.1 returns (up to colour-space rounding)
    back = mmcv.adjust_hue(down, 0.1, backend=backend)
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3
