"""``LoadImageFromFileChecked``: mmcv's ``LoadImageFromFile`` with errors that name the file, an
opt-in skip of unreadable files, and one output format (``H x W x 3`` uint8, BGR) for every
image mode.

What mmcv 2.x's ``LoadImageFromFile`` (which mmpretrain re-exports) does with bad input, and what
this subclass does instead:

* missing file: ``FileNotFoundError [Errno 2]`` -> :class:`MissingImageError` naming the path and
  the sample index, pointing to ``tools/check_data.py``;
* empty (0-byte) file: ``cv2.error ... !buf.empty()`` without a file name -> :class:`ImageLoadError`
  naming the path and the reason;
* truncated / corrupt / not an image: cv2 ``AssertionError: failed to load image: PATH``, pillow
  ``OSError: image file is truncated`` without a file name -> :class:`ImageLoadError` naming the
  path and the reason, or a skip (below);
* 16-bit gray PNG with ``imdecode_backend='pillow'``: saturated (every value > 255 becomes 255)
  -> ``value >> 8``, as cv2 converts it;
* ``color_type='unchanged'``: 2-D gray, gray+alpha, RGBA or uint16 arrays as stored (with pillow
  also palette indices and CMYK planes passed on as if BGR) -> ``H x W x 3`` uint8 colours
  (:func:`to_hwc3_uint8`); ``color_type='grayscale'``: 2-D -> the gray replicated to 3 channels.

With the default ``color_type='color'`` and the cv2 backend, mmcv already returns ``H x W x 3``
uint8 for gray, gray+alpha, palette, 1-bit, RGBA, CMYK and 16-bit files (cv2's ``IMREAD_COLOR``
drops alpha and shifts 16-bit values right by 8): the normalisation is then a no-op, so the
output equals mmcv's pixel for pixel.

**Skipping.** ``skip_corrupt=True`` returns ``None`` for a file that exists but cannot be decoded
(``skip_missing=True``: also for a missing file); mmengine's ``BaseDataset.__getitem__`` then
draws another sample (up to ``max_refetch`` times, training mode only).  Every skipped file is
logged as a warning that names it and recorded in the class-level :attr:`skipped` dict
(``path -> reason``; per process, i.e. per dataloader worker).

The runtime base (``ssl_runtime.checked_image_loading``) swaps the plain ``LoadImageFromFile`` of
every mmpretrain-scoped ``train_dataloader`` pipeline for this transform (see
:func:`mmssl_ext.engine.runner.use_checked_image_loading`), and ``SSLRunner`` adds the dataset's
annotation file to the error; other pipelines opt in with
``dict(type='LoadImageFromFileChecked', ...)``.
"""
import io
import logging
from typing import Dict, Optional, Tuple

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from mmssl_ext.registry import TRANSFORMS

# pillow modes of 16-bit (and 32-bit integer) gray images; mmcv's pillow path converts them with
# ``Image.convert('RGB')``, which clips every value above 255
_PIL_HIGH_DEPTH_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')
# pillow modes whose raw planes are gray / RGB(A) (what ``color_type='unchanged'`` can pass on)
_PIL_PLAIN_MODES = ('1', 'L', 'LA', 'RGB', 'RGBA')


class ImageLoadError(OSError):
    """An image file could not be read or decoded; the message names the file and the reason."""


class MissingImageError(ImageLoadError, FileNotFoundError):
    """An image file listed by the dataset does not exist (the message names it)."""


def to_hwc3_uint8(img: np.ndarray) -> np.ndarray:
    """``img`` as a C-contiguous ``H x W x 3`` uint8 array (channel order kept).

    * 16-bit (uint16) -> 8-bit as ``value >> 8``, the conversion cv2 applies when it loads a
      16-bit file as colour; bool (1-bit) -> 0 / 255;
    * 2-D or 1-channel gray -> the gray channel replicated 3 times;
    * 2 channels (gray + alpha) -> the gray channel replicated; 4 channels (BGRA) -> alpha
      dropped (as cv2's ``IMREAD_COLOR`` does; not composited).

    Raises:
        ValueError: any other dtype (float, 32-bit integers) or channel count; the message names
            the dtype / shape.
    """
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        raise ValueError(f'unsupported pixel type {img.dtype} (8- and 16-bit images are '
                         f'supported)')
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f'unsupported image shape {img.shape}')
    channels = img.shape[2]
    if channels in (1, 2):
        img = np.repeat(img[..., :1], 3, axis=2)
    elif channels == 4:
        img = img[..., :3]
    elif channels != 3:
        raise ValueError(f'unsupported number of channels: {channels}')
    return np.ascontiguousarray(img)


@TRANSFORMS.register_module()
class LoadImageFromFileChecked(LoadImageFromFile):
    """Load an image as ``H x W x 3`` uint8; name the file when it cannot be loaded.

    Same arguments as mmcv's ``LoadImageFromFile`` plus the ones below.  ``ignore_empty=True``
    (mmcv's flag) acts as ``skip_corrupt=True, skip_missing=True``.  ``to_float32`` converts
    after the normalisation.

    **Required Keys:** ``img_path`` (``sample_idx`` is named in errors when present)

    **Modified Keys:** ``img``, ``img_shape``, ``ori_shape``

    Args:
        skip_corrupt (bool): Return ``None`` (the dataset then picks another sample) for a file
            that exists but cannot be decoded (empty, truncated, corrupt, not an image, or an
            unsupported pixel type), instead of raising :class:`ImageLoadError`.  Defaults to
            False.
        skip_missing (bool): The same for a file that does not exist (instead of
            :class:`MissingImageError`).  Defaults to False.

    Example (config)::

        train_pipeline = [dict(type='LoadImageFromFileChecked', skip_corrupt=True), ...]
    """

    #: files skipped by any instance in this process, ``path -> reason``
    skipped: Dict[str, str] = {}

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 file_client_args: Optional[dict] = None,
                 ignore_empty: bool = False,
                 *,
                 backend_args: Optional[dict] = None,
                 skip_corrupt: bool = False,
                 skip_missing: bool = False) -> None:
        super().__init__(to_float32=to_float32, color_type=color_type,
                         imdecode_backend=imdecode_backend, file_client_args=file_client_args,
                         ignore_empty=ignore_empty, backend_args=backend_args)
        self.skip_corrupt = skip_corrupt or ignore_empty
        self.skip_missing = skip_missing or ignore_empty

    @classmethod
    def reset_skipped(cls) -> None:
        """Forget the skipped files recorded so far (in this process)."""
        cls.skipped.clear()

    def _get_bytes(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def _decode(self, content: bytes) -> Optional[np.ndarray]:
        if self.imdecode_backend == 'pillow':
            from PIL import Image, ImageOps
            with io.BytesIO(content) as buff, Image.open(buff) as pil:
                if pil.mode in _PIL_HIGH_DEPTH_MODES:  # decode here: mmcv would clip to 255
                    if self.color_type in ('color', 'grayscale'):
                        pil = ImageOps.exif_transpose(pil)
                    return np.clip(np.asarray(pil), 0, 65535).astype(np.uint16)
                if self.color_type == 'unchanged' and pil.mode not in _PIL_PLAIN_MODES:
                    # mmcv would return palette indices (P) or CMYK / YCbCr planes as if BGR
                    return np.ascontiguousarray(np.asarray(pil.convert('RGB'))[..., ::-1])
        return mmcv.imfrombytes(content, flag=self.color_type, backend=self.imdecode_backend)

    def _fail(self, results: dict, reason: str, missing: bool = False) -> None:
        """Raise, or record + log the skip when the matching skip flag is set."""
        filename = results['img_path']
        where = f' (sample_idx {results["sample_idx"]})' if 'sample_idx' in results else ''
        if (self.skip_missing if missing else self.skip_corrupt):
            LoadImageFromFileChecked.skipped[filename] = reason
            print_log(f'{type(self).__name__}: skipped {filename}{where}: {reason} '
                      f'({len(LoadImageFromFileChecked.skipped)} file(s) skipped so far in this '
                      f'process)', logger='current', level=logging.WARNING)
            return None
        if missing:
            raise MissingImageError(
                f'image file not found: {filename}{where}; the annotation file or data_root / '
                f'data_prefix points to a file that does not exist (tools/check_data.py CONFIG '
                f'lists every missing file; skip_missing=True in {type(self).__name__} skips '
                f'them)')
        raise ImageLoadError(f'cannot load image {filename}{where}: {reason}. Replace or remove '
                             f'the file, or set skip_corrupt=True in {type(self).__name__} to '
                             f'skip such files')

    def load(self, filename: str) -> Tuple[Optional[np.ndarray], Optional[str], bool]:
        """``(image, None, False)``, or ``(None, reason, missing)`` when ``filename`` cannot be
        loaded: the one decoding path of training, :meth:`check` and the folder scan."""
        try:
            content = self._get_bytes(filename)
        except FileNotFoundError:
            return None, 'file not found', True
        except Exception as e:  # permission, I/O error, a directory ...
            return None, f'cannot read the file ({type(e).__name__}: {e})', False
        if not content:
            return None, 'the file is empty (0 bytes)', False
        try:
            img = self._decode(content)
        except Exception as e:
            return None, (f'cannot decode it ({type(e).__name__}: {e}); the file is truncated, '
                          f'corrupt or not an image'), False
        if img is None:
            return None, (f'{self.imdecode_backend} cannot decode it; the file is truncated, '
                          f'corrupt or not an image ({len(content)} bytes)'), False
        try:
            return to_hwc3_uint8(img), None, False
        except ValueError as e:
            return None, str(e), False

    def check(self, filename: str) -> Optional[str]:
        """Why ``filename`` cannot be loaded for training, or None when it can."""
        return self.load(filename)[1]

    def transform(self, results: dict) -> Optional[dict]:
        img, reason, missing = self.load(results['img_path'])
        if img is None:
            return self._fail(results, reason, missing=missing)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', skip_corrupt={self.skip_corrupt}, skip_missing={self.skip_missing})')
