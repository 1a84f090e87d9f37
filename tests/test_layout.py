"""The shape of the library, as docs/layout.md draws it: every public function of
models/ and utils/ annotated, no function in utils/ with more than 7 parameters or over 60
lines and no module over 400 lines, settings below what uses them, scripts that import only the
library, an import graph without circles, and the log's columns spelled in one module."""
import ast
import os

import pytest

from builders import REPO

SCRIPTS = ("cifar", "imagenet", "bench", "export", "predict", "plot", "summarize")


def library_files():
    for package in ("models", "utils"):
        for folder, _, names in os.walk(os.path.join(REPO, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, REPO), ast.parse(open(path).read())


def functions(tree, public=True):
    """(qualified name, def, whether public) of every function and method outside functions."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for name, fn, pub in functions(node, public and not node.name.startswith("_")):
                yield f"{node.name}.{name}", fn, pub
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            private = node.name.startswith("_") and not (node.name.startswith("__")
                                                         and node.name.endswith("__"))
            yield node.name, node, public and not private


def parameters(fn):
    a = fn.args
    named = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    return named + [x for x in (a.vararg, a.kwarg) if x is not None]


def test_every_public_function_of_the_library_is_annotated():
    missing = []
    for path, tree in library_files():
        for name, fn, public in functions(tree):
            if not public:
                continue
            bare = [p.arg for p in parameters(fn) if p.annotation is None]
            if bare or (fn.returns is None and fn.name != "__init__"):
                missing.append(f"{path}: {name}({', '.join(bare)})")
    assert not missing, "\n".join(missing)


def test_no_function_in_utils_takes_more_than_seven_parameters():
    crowded = [f"{path}:{fn.lineno} {fn.name}: {len(parameters(fn))}"
               for path, tree in library_files() if path.startswith("utils")
               for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
               and len(parameters(fn)) > 7]
    assert not crowded, "\n".join(crowded)


def test_no_function_in_utils_is_over_60_lines():
    long = [f"{path}:{fn.lineno} {fn.name}: {fn.end_lineno - fn.lineno + 1} lines"
            for path, tree in library_files() if path.startswith("utils")
            for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            and fn.end_lineno - fn.lineno + 1 > 60]
    assert not long, "\n".join(long)


def test_the_logs_columns_are_spelled_in_one_module():
    from utils.records import columns
    names = set(columns.WORDS)
    spelled = [f"{path}:{node.lineno} {node.value!r}"
               for path, tree in list(library_files()) + list(script_files())
               if path != os.path.join("utils", "records", "columns.py")
               for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and node.value in names]
    assert not spelled, "\n".join(spelled)


def test_the_raw_flag_values_are_read_inside_the_settings_only():
    """A command line's raw values (ParsedFlags.values, read by key) are the settings' to
    type: every other module reads the typed settings or Invocation. Found as any ``x.values``
    that is not a call of a dict's values() nor of a call's result (torch.sort(t).values)."""
    reads = []
    for path, tree in list(library_files()) + list(script_files()):
        if path.startswith(os.path.join("utils", "settings")):
            continue
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        reads += [f"{path}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr == "values"
                  and id(node) not in called and not isinstance(node.value, ast.Call)]
    assert not reads, reads


def script_files():
    for name in SCRIPTS:
        path = os.path.join(REPO, name + ".py")
        yield name + ".py", ast.parse(open(path).read())


def test_no_module_of_utils_is_over_400_lines():
    long = [f"{path}: {len(open(os.path.join(REPO, path)).read().splitlines())} lines"
            for path, _ in library_files() if path.startswith("utils")
            and len(open(os.path.join(REPO, path)).read().splitlines()) > 400]
    assert not long, "\n".join(long)


def test_the_settings_import_nothing_from_what_uses_them():
    """utils/settings/ holds values and their parsing: the layers that act on the values (the
    engine, the data, the records, the session's stages) import it, never the other way."""
    above = ("utils.train", "utils.data", "utils.records", "utils.session", "utils.cli",
             "utils.scripts")
    reached = [f"{path}: {target}" for path, tree in library_files()
               if path.startswith(os.path.join("utils", "settings"))
               for target in imported_modules(tree, path[:-3].replace(os.sep, "."))
               if target.startswith(above)]
    assert not reached, "\n".join(reached)


def imported_modules(tree, module):
    """The absolute names of the modules ``module``'s code imports."""
    package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_imports_the_library_and_no_other_script(script):
    with open(os.path.join(REPO, f"{script}.py")) as f:
        imports = {name.split(".")[0] for name in imported_modules(ast.parse(f.read()), script)}
    assert not imports & set(SCRIPTS) - {script}


def test_the_librarys_imports_run_in_one_direction():
    graph = {}
    for path, tree in library_files():
        graph[path[:-3].replace(os.sep, ".")] = tree  # a package as PACKAGE.__init__
    known = {m.replace(".__init__", "") for m in graph}
    edges = {}
    for module, tree in graph.items():
        name = module.replace(".__init__", "")
        targets = set()
        for target in imported_modules(tree, module):
            while target and target not in known:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                targets.add(target)
        edges[name] = targets
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not circles, "\n".join(circles)
