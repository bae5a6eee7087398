"""The option objects of the ClusterFit steps: each groups flags that several steps share and
checks them once, with errors that name the command-line flag.

* :class:`NPreSpec`: the pretrained network N_pre (``--config``/``--checkpoint`` or
  ``--torchvision``/``--weights``, ``--layer``, ``--pool``);
* :class:`ImageSource`: the images a step reads (``--data-config`` or ``--data-root``
  [``--ann-file``] [``--data-prefix``], size, batch, workers);
* :class:`KMeansOptions`: the cluster step's k-means (``--k``, ``--niter``, ``--pca-dim`` ...);
* :class:`SoftTargetOptions`: the soft-target step (``--clusters``, ``--mode``, ``--temperature``);
* :class:`TrainOptions`: how the fit / distill step trains (``--work-dir``, ``--cfg-options`` and
  the flags of ``tools/train.py``).
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

#: default temperatures: classifier logits (Hinton's KD range) / cosine similarities in [-1, 1]
DEFAULT_SOFT_TEMPERATURE = dict(logits=4.0, centroids=0.1)


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


def _check_count(flag: str, value, minimum: int = 1) -> None:
    if value is not None and (not _is_int(value) or value < minimum):
        raise ValueError(f'{flag} must be an integer >= {minimum}, got {value!r}')


class _Options:
    """``from_kwargs``: the fields of the dataclass taken out of a dict of keyword arguments."""

    @classmethod
    def from_kwargs(cls, kwargs: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})


@dataclass
class NPreSpec(_Options):
    """The pretrained network N_pre: an mmssl_ext / mmpretrain config with a full or backbone-only
    checkpoint (``'random'``: its random init), or a torchvision model with local weights.

    ``config_flag`` is how the command spells the config flag (``run`` says
    ``--pretrained-config``), so that errors name the flag the user typed.
    """
    config: Optional[str] = None
    checkpoint: Optional[str] = None
    torchvision: Optional[str] = None
    weights: Optional[str] = None
    layer: int = -1
    pool: str = 'avg'
    cfg_options: Optional[dict] = None
    config_flag: str = '--config'

    @property
    def given(self) -> bool:
        return self.config is not None or self.torchvision is not None

    def validate(self, required: bool = True) -> 'NPreSpec':
        """Raise ``ValueError`` naming the flag for an incomplete or contradictory spec;
        ``required=False``: no N_pre at all is fine (soft targets from saved features)."""
        cf = self.config_flag
        either = (f'give N_pre either as {cf} C --checkpoint X or as --torchvision NAME '
                  f'--weights FILE')
        if self.config is not None and self.torchvision is not None:
            raise ValueError(f'--torchvision and {cf} are exclusive: {either}')
        if self.weights is not None and self.torchvision is None:
            raise ValueError('--weights needs --torchvision NAME (a config-built N_pre takes '
                             '--checkpoint)')
        if self.checkpoint is not None and self.config is None:
            raise ValueError(f'--checkpoint needs {cf} (the config of N_pre); a torchvision '
                             f'model takes --weights')
        if required and not self.given:
            raise ValueError(f'no pretrained network: {either}')
        if self.torchvision is not None and not self.weights:
            raise ValueError(f'--torchvision {self.torchvision} needs --weights: a local '
                             f'state-dict file (e.g. torch.save(torchvision.models.'
                             f'{self.torchvision}().state_dict(), path)); mmssl_ext never '
                             f"downloads weights ('random' keeps the random init)")
        if self.config is not None and not self.checkpoint:
            raise ValueError(f'{cf} {self.config} needs --checkpoint (a full training '
                             f'checkpoint, a backbone-only file from tools/extract_backbone.py, '
                             f"or 'random')")
        if not _is_int(self.layer) or self.layer < -1:
            raise ValueError(f'--layer must be -1 (last) or a stage index >= 0, got '
                             f'{self.layer!r}')
        if self.pool not in ('avg', 'max'):
            raise ValueError(f"--pool must be 'avg' or 'max', got {self.pool!r}")
        return self

    @property
    def name(self) -> str:
        return self.torchvision if self.torchvision is not None else str(self.config)


@dataclass
class ImageSource(_Options):
    """The images of a cluster / soft-target step, read in a fixed order: an explicit folder
    (``data_root`` [``ann_file``] [``data_prefix``], resized to ``img_size``; ``unlabeled``: every
    image at any depth, no class sub-folders), or the ``knn_eval.train_dataloader`` of
    ``data_config`` (a config without one but training on an unlabeled folder: that folder; see
    :meth:`or_config`)."""
    data_config: Optional[str] = None
    data_cfg_options: Optional[dict] = None
    data_root: Optional[str] = None
    ann_file: Optional[str] = None
    data_prefix: Optional[str] = None
    img_size: int = 32
    crop_ratio: Optional[float] = None
    num_samples: Optional[int] = None
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    unlabeled: bool = False

    def validate(self) -> 'ImageSource':
        """Raise ``ValueError`` naming the flag for contradictory or out-of-range values."""
        if self.data_root is not None and self.data_config is not None:
            raise ValueError('--data-root and --data-config are exclusive: the images come '
                             'from a folder or from the knn_eval section of a config')
        if self.data_root is None:
            for flag, value in (('--ann-file', self.ann_file),
                                ('--data-prefix', self.data_prefix),
                                ('--crop-ratio', self.crop_ratio),
                                ('--unlabeled', self.unlabeled or None)):
                if value is not None:
                    raise ValueError(f'{flag} needs --data-root (with a config, the images are '
                                     f'its knn_eval.train_dataloader)')
        if self.data_cfg_options and self.data_config is None:
            raise ValueError('--data-cfg-options needs --data-config')
        _check_count('--img-size', self.img_size)
        _check_count('--num-samples', self.num_samples)
        _check_count('--batch-size', self.batch_size)
        _check_count('--num-workers', self.num_workers, minimum=0)
        if self.crop_ratio is not None and not 0 < self.crop_ratio <= 1:
            raise ValueError(f'--crop-ratio must be in (0, 1], got {self.crop_ratio}')
        return self

    def or_config(self, config: Optional[str], cfg_options: Optional[dict]) -> 'ImageSource':
        """These images, or, when neither a folder nor a data config is given, the knn_eval
        images of ``config`` with ``cfg_options`` (N_pre's config, or the fit config)."""
        if self.data_root is not None or self.data_config is not None or config is None:
            return self
        return dataclasses.replace(self, data_config=config, data_cfg_options=cfg_options)


@dataclass
class KMeansOptions(_Options):
    """k-means of the cluster step (:func:`mmssl_ext.clustering.kmeans`)."""
    k: int = 0
    niter: int = 20
    seed: int = 0
    pca_dim: Optional[int] = None
    whiten: bool = False
    l2_normalize: bool = True
    save_features: bool = False

    def validate(self) -> 'KMeansOptions':
        if isinstance(self.k, bool) or int(self.k) != self.k or self.k < 1:
            raise ValueError(f'--k (number of clusters) must be an integer >= 1, got {self.k}')
        _check_count('--niter', self.niter)
        _check_count('--pca-dim', self.pca_dim)
        if self.whiten and self.pca_dim is None:
            raise ValueError('--whiten needs --pca-dim (whitening is part of the PCA)')
        return self


@dataclass
class SoftTargetOptions(_Options):
    """The soft-target step: ``mode`` 'logits' (an ImageClassifier's ``softmax(logits / T)``),
    'centroids' (``softmax(cos(feature, centroid) / T)`` over a cluster step's centroids) or
    'auto' (centroids with ``clusters``, else logits)."""
    clusters: Optional[str] = None
    mode: str = 'auto'
    temperature: Optional[float] = None
    dtype: str = 'float32'
    seed: int = 0

    def resolved(self) -> Tuple[str, float]:
        """``(mode, temperature)`` with the defaults filled in; checks both."""
        mode = self.mode
        if mode == 'auto':
            mode = 'centroids' if self.clusters else 'logits'
        if mode not in ('logits', 'centroids'):
            raise ValueError(f"--mode must be 'auto', 'logits' or 'centroids', got {mode!r}")
        t = DEFAULT_SOFT_TEMPERATURE[mode] if self.temperature is None else self.temperature
        if not t > 0:
            raise ValueError(f'--temperature must be positive, got {t}')
        return mode, float(t)

    def validate(self) -> 'SoftTargetOptions':
        mode, _ = self.resolved()
        if self.dtype not in ('float32', 'float16'):
            raise ValueError(f"--dtype must be 'float32' or 'float16', got {self.dtype!r}")
        if mode == 'logits' and self.clusters:
            raise ValueError('--clusters is for --mode centroids; logits soft targets come '
                             'from the classifier itself')
        if mode == 'centroids' and not self.clusters:
            raise ValueError('--mode centroids needs --clusters DIR (a cluster-step folder with '
                             'centroids.npy and summary.json)')
        return self


@dataclass
class TrainOptions(_Options):
    """How the fit / distill step trains: the work dir, ``--cfg-options`` (applied after the
    step's own overrides, so they win) and the flags of ``tools/train.py``."""
    work_dir: Optional[str] = None
    cfg_options: Optional[dict] = None
    resume: Optional[str] = None  # 'auto' (latest checkpoint of the work dir) or a checkpoint
    amp: bool = False
    no_validate: bool = False
    auto_scale_lr: bool = False
    no_pin_memory: bool = False
    no_persistent_workers: bool = False
    launcher: str = 'none'
    channels_last: bool = False

    def runner_kwargs(self) -> dict:
        """The keyword arguments of :func:`mmssl_ext.engine.runner.merge_train_options`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != 'cfg_options'}
