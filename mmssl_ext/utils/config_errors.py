"""Name the config key behind mmengine's "unexpected keyword argument" errors.

A misspelled key in a config file or in ``--cfg-options`` (``model.backbone.dpeth=18``) reaches the
class that the registry builds as a keyword argument, and the run stops with Python's bare
``TypeError: ResNet.__init__() got an unexpected keyword argument 'dpeth'``, raised deep inside
a registry build (of the model, a dataset, a transform, the optimizer, a loop ...).  This
module turns that into a message naming the key path in the config and the closest argument the
class does take::

    ConfigKeyError: unknown config key `model.backbone.dpeth` (in /path/cfg.py or its
    --cfg-options): ResNet takes no argument 'dpeth'; did you mean 'depth'? ...

:func:`explain_config_errors` is the context manager ``tools/train.py`` wraps around building and
running the ``Runner``; it also names the file and the config key behind mmengine's
``AssertionError: backbone. is not in the pretrained model`` (a ``Pretrained`` init_cfg whose
checkpoint holds nothing under its prefix, e.g. a head-only file), which is raised while the
weights are initialised, before ``PretrainedCheckHook`` can look.  Every other exception, and a
``TypeError`` whose keyword is not found in the config, passes through unchanged.
"""
import difflib
import importlib
import inspect
import re
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

_UNEXPECTED_KW = re.compile(r"([\w.<>]+)\(\) got an unexpected keyword argument '([^']+)'")
_REGISTRY_NAMES = ('MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
                   'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'LOOPS', 'DATA_SAMPLERS',
                   'METRICS', 'EVALUATORS', 'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS',
                   'MODEL_WRAPPERS', 'TASK_UTILS', 'WEIGHT_INITIALIZERS')


class ConfigKeyError(TypeError):
    """A config key is not an argument of the class it configures (the message names the key
    path and the closest valid argument)."""


def find_key(node: Any, key: str, path: str = '') -> List[Tuple[str, dict]]:
    """``(dotted path, the dict holding it)`` for every occurrence of ``key`` in a config tree;
    list items appear as ``pipeline[2]``."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f'{path}.{k}' if path else str(k)
            if k == key:
                found.append((sub, node))
            found += find_key(v, key, sub)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found += find_key(v, key, f'{path}[{i}]')
    return found


def _registries(scope: Optional[str]) -> list:
    mods = []
    for name in (scope, 'mmpretrain', 'mmengine'):
        if not name:
            continue
        try:
            mods.append(importlib.import_module(f'{name}.registry'))
        except ImportError:
            continue
    return [getattr(m, r) for m in mods for r in _REGISTRY_NAMES if hasattr(m, r)]


def resolve_type(holder: dict, path: str, scope: Optional[str]) -> Optional[type]:
    """The class a config dict builds: its ``type`` looked up in the registries of ``scope``
    (then mmpretrain's, mmengine's); torch's ``DataLoader`` for a ``*_dataloader`` dict."""
    t = holder.get('type', None)
    if inspect.isclass(t) or inspect.isfunction(t):
        return t
    if isinstance(t, str):
        scope = holder.get('_scope_', scope)
        for registry in _registries(scope):
            try:
                obj = registry.get(t)
            except Exception:  # noqa: BLE001  a registry that cannot import its scope
                obj = None
            if obj is not None:
                return obj
        return None
    parent = path.rsplit('.', 2)[-2] if path.count('.') >= 1 else ''
    if t is None and parent.endswith('dataloader'):
        from torch.utils.data import DataLoader
        return DataLoader
    return None


def accepted_arguments(obj: Any) -> List[str]:
    """Keyword arguments ``obj`` (a class or function) takes; for a class whose ``__init__``
    passes ``**kwargs`` on, also those of its base classes."""
    names: List[str] = []
    targets = inspect.getmro(obj) if inspect.isclass(obj) else (obj, )
    for target in targets:
        fn = target.__init__ if inspect.isclass(obj) else target
        if inspect.isclass(obj) and '__init__' not in vars(target):
            continue
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            break
        var_kw = False
        for p in params:
            if p.kind == p.VAR_KEYWORD:
                var_kw = True
            elif p.kind != p.VAR_POSITIONAL and p.name != 'self' and p.name not in names:
                names.append(p.name)
        if not var_kw:
            break
    return names


def explain_type_error(err: TypeError, cfg) -> Optional[ConfigKeyError]:
    """A :class:`ConfigKeyError` for an "unexpected keyword argument" ``err`` whose keyword is a
    key of ``cfg``; ``None`` when ``err`` is another error or the keyword is not in ``cfg``."""
    m = _UNEXPECTED_KW.search(str(err))
    if m is None:
        return None
    owner, key = m.group(1), m.group(2)
    owner = owner[:-len('.__init__')] if owner.endswith('.__init__') else owner
    owner = owner.rsplit('.', 1)[-1]
    tree = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    hits = find_key(tree, key)
    if not hits:
        return None
    scope = tree.get('default_scope', None) if isinstance(tree, dict) else None
    typed = [(p, h, resolve_type(h, p, scope)) for p, h in hits]
    matching = [t for t in typed if t[2] is not None and getattr(t[2], '__name__', '') == owner]
    if not matching:  # the error came from a base class (BaseDataset for ImageNet ...)
        matching = [t for t in typed if t[2] is not None and inspect.isclass(t[2]) and any(
            b.__name__ == owner for b in inspect.getmro(t[2]))] or typed
    paths = ' or '.join(f'`{p}`' for p, _, _ in matching)
    cls = matching[0][2]
    what = getattr(cls, '__name__', owner) if cls is not None else owner
    hint = ''
    if cls is not None:
        close = difflib.get_close_matches(key, accepted_arguments(cls), n=3, cutoff=0.7)
        if close:
            hint = '; did you mean ' + ' or '.join(repr(c) for c in close) + '?'
    source = getattr(cfg, 'filename', None)
    where = f' (in {source} or its --cfg-options)' if source else ''
    return ConfigKeyError(
        f'unknown config key {paths}{where}: {what} takes no argument {key!r}{hint} '
        f'[{type(err).__name__}: {err}]')


_NO_PREFIX = re.compile(r'^(\S+) is not in the pretrained model$')


def explain_pretrained_prefix(err: AssertionError, cfg) -> Optional[Exception]:
    """mmengine's ``AssertionError: backbone. is not in the pretrained model`` (a ``Pretrained``
    init_cfg whose file holds no key under its ``prefix``) as a ``PretrainedKeysError`` naming
    the file, the config key and the prefixes the file does hold; ``None`` for other errors."""
    m = _NO_PREFIX.match(str(err))
    if m is None:
        return None
    prefix = m.group(1)
    tree = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    hits = [(p, h) for p, h in find_key(tree, 'prefix')
            if h.get('type') == 'Pretrained' and h.get('checkpoint') and
            str(h['prefix']).rstrip('.') + '.' == prefix]
    if not hits:
        return None
    from .checkpoint import PretrainedKeysError, load_state
    path, holder = hits[0]
    ckpt = str(holder['checkpoint'])
    key = path[:-len('.prefix')]
    try:
        heads = sorted({k.split('.', 1)[0] + '.' for k in load_state(ckpt)})
        holds = f'its weights start with {", ".join(heads[:6]) or "nothing"}'
    except Exception as e:  # noqa: BLE001  the file itself is unreadable: say so
        holds = f'it cannot be read ({e})'
    return PretrainedKeysError(
        f'{ckpt} holds no weights under the prefix {prefix!r} that {key} '
        f"(dict(type='Pretrained', prefix={holder['prefix']!r})) loads ({holds}). Wrong "
        f'checkpoint? A backbone-only file (tools/extract_backbone.py) needs '
        f'--cfg-options {key}.prefix=None')


@contextmanager
def explain_config_errors(cfg) -> Iterator[None]:
    """Re-raise a misspelled-key ``TypeError`` inside the block as :class:`ConfigKeyError`, and
    mmengine's "prefix is not in the pretrained model" assertion with the file and key named."""
    try:
        yield
    except ConfigKeyError:
        raise
    except TypeError as e:
        better = explain_type_error(e, cfg)
        if better is None:
            raise
        raise better from e
    except AssertionError as e:
        better = explain_pretrained_prefix(e, cfg)
        if better is None:
            raise
        raise better from e
