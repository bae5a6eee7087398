"""The package's layering (shared/DESIGN.md): no import cycle among mmssl_ext modules and no
import from a lower layer to a higher one, for module-level AND function-level imports.

    cli -> clusterfit / engine -> models / datasets -> evaluation / utils / clustering / registry

Exempt: ``import mmssl_ext`` (the root only registers everything), the deprecated ``apis``
aliases (they sit above the CLI and nothing may import them), and ``__getattr__`` functions,
which are the deprecation shims of names that moved up to the CLI layer.
"""
import ast
import importlib
import os.path as osp
import pkgutil

import mmssl_ext

PKG_DIR = osp.dirname(mmssl_ext.__file__)
LAYERS = {
    'registry': 0, 'version': 0, 'utils': 0, 'evaluation': 0, 'clustering': 0,
    'zoo': 0,
    'models': 1, 'datasets': 1,
    'engine': 2, 'clusterfit': 2,
    'cli': 3,
    'apis': 4,
}


def _modules():
    out = {}
    for info in pkgutil.walk_packages([PKG_DIR], prefix='mmssl_ext.'):
        rel = info.name.split('.')[1:]
        path = osp.join(PKG_DIR, *rel)
        path = osp.join(path, '__init__.py') if info.ispkg else path + '.py'
        out[info.name] = (path, info.ispkg)
    return out


def _imports(name: str, path: str, is_pkg: bool, known) -> set:
    """mmssl_ext modules ``name`` imports anywhere except inside ``__getattr__``."""
    tree = ast.parse(open(path).read(), path)
    shims = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
             and f.name == '__getattr__' for n in ast.walk(f)}
    package = name if is_pkg else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in shims:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                mod = '.'.join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ''
            targets = [mod] + [f'{mod}.{a.name}' for a in node.names]
        else:
            continue
        for t in targets:
            if t in known and t not in ('mmssl_ext', name):
                found.add(t)
    return found


def _graph():
    mods = _modules()
    known = set(mods) | {'mmssl_ext'}
    return {m: _imports(m, p, pkg, known) for m, (p, pkg) in mods.items()}


def _layer(mod: str) -> int:
    top = mod.split('.')[1]
    assert top in LAYERS, f'{mod}: add its top-level name to LAYERS (and to DESIGN.md)'
    return LAYERS[top]


def test_whole_package_imports():
    for name in _modules():
        importlib.import_module(name)


def test_no_upward_import():
    bad = [f'{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})'
           for m, targets in _graph().items() for t in sorted(targets)
           if _layer(t) > _layer(m) and m.split('.')[1] != 'apis']
    assert not bad, '\n'.join(bad)


def test_nothing_imports_the_deprecated_apis():
    bad = [f'{m} imports {t}' for m, targets in _graph().items() for t in targets
           if t.startswith('mmssl_ext.apis') and not m.startswith('mmssl_ext.apis')]
    assert not bad, '\n'.join(bad)


def _cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None (iterative DFS)."""
    # a package's __init__ importing its own sub-modules is how packages are built: only edges
    # between different modules that are not parent -> child count
    edges = {m: {t for t in ts if not t.startswith(m + '.')} for m, ts in graph.items()}
    state, stack = {}, []
    for start in edges:
        if state.get(start):
            continue
        todo = [(start, iter(sorted(edges[start])))]
        state[start] = 1
        stack = [start]
        while todo:
            node, it = todo[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                todo.pop()
                stack.pop()
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                stack.append(nxt)
                todo.append((nxt, iter(sorted(edges.get(nxt, ())))))
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, ' -> '.join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert _cycle({'a': {'b'}, 'b': set(), 'p': {'p.x'}, 'p.x': set()}) is None


def test_deprecated_aliases_are_the_moved_modules():
    import warnings

    from mmssl_ext.cli import knn_eval, train
    from mmssl_ext.datasets import checks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        old_train = importlib.import_module('mmssl_ext.apis.train')
        old_main = checks.main
    assert old_train is train  # monkeypatching the old path patches the running code
    from mmssl_ext.cli.check_data import main
    assert old_main is main
    assert knn_eval.build_model is importlib.import_module('mmssl_ext.utils.config').build_model
    assert any(issubclass(w.category, DeprecationWarning) and 'mmssl_ext.cli' in str(w.message)
               for w in caught)
