"""app.py rules, read through ``ast``: Gradio 6 compatibility, 0.0.0.0, one port everywhere;
and every Python file must parse."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.pyfacts import GradioNames, facts
from spacetrain.lint.registry import rule
from spacetrain.lint.space_folder import SpaceFolder

_GRADIO_MIGRATION = "https://www.gradio.app/guides/gradio-6-migration-guide"
_UNKNOWN = object()  # an expression whose value cannot be known statically
GRADIO_DEFAULT_PORT = 7860
GRADIO_DEFAULT_HOST = "127.0.0.1"


@rule(
    "python-syntax",
    Severity.ERROR,
    fix_title="Fix the syntax error (python -m py_compile FILE shows it too)",
    url="https://docs.python.org/3/reference/index.html",
)
def python_syntax(space: SpaceFolder) -> Iterator[Hit]:
    """A Python file of the Space does not parse (or is not UTF-8).

    ## What it does
    Parses every `.py` file with `ast` and reports the line of the `SyntaxError`, or
    that the file is binary or not UTF-8.

    ## Why is this bad?
    The Space builds fine and then dies at start-up with `RUNTIME_ERROR`, or `train.py`
    fails only when someone presses "Start Training". The other app rules cannot look
    inside a file that does not parse.

    ## Example
    ```python
    demo.launch(server_name="0.0.0.0"
    ```
    """
    for rel, module in space.python.items():
        if module.problem is not None:
            line, detail = module.problem
            yield Hit(rel, line, f"{rel} {detail}")


# ------------------------------------------------------------------ AST helpers


def _dotted(node: ast.AST) -> str | None:
    """``os.environ.get`` for an attribute chain of plain names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _callable_name(call: ast.Call, names: GradioNames) -> tuple[str, bool] | None:
    """(name, is_gradio_member) for ``gr.Blocks(...)``/``Blocks(...)``/``x.launch(...)``."""
    func = call.func
    if isinstance(func, ast.Name) and func.id in names.members:
        return names.members[func.id], True
    if isinstance(func, ast.Attribute):
        root = func.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in names.modules:
            return func.attr, True
        return func.attr, False  # a method call on some object: demo.launch(...)
    return None


@dataclass(frozen=True)
class _Kwarg:
    name: str
    value: ast.AST | None
    line: int
    via: str | None  # "**opts (line 12)" when it came through a splat


def _literal_dict_items(node: ast.AST) -> list[tuple[str, ast.AST | None, int]]:
    if isinstance(node, ast.Dict):
        return [
            (k.value, v, k.lineno)
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        ]
    if isinstance(node, ast.Call) and _dotted(node.func) == "dict":
        return [(kw.arg, kw.value, kw.value.lineno) for kw in node.keywords if kw.arg]
    return []


def _kwargs(call: ast.Call, assigned: dict[str, list[ast.AST]]) -> list[_Kwarg]:
    out = []
    for kw in call.keywords:
        if kw.arg is not None:
            out.append(_Kwarg(kw.arg, kw.value, kw.value.lineno, None))
            continue
        sources = [kw.value]
        label = "**{...}"
        if isinstance(kw.value, ast.Name):
            sources = assigned.get(kw.value.id, [])
            label = f"**{kw.value.id}"
        for source in sources:
            for name, value, line in _literal_dict_items(source):
                out.append(_Kwarg(name, value, call.lineno, f"{label} (line {line})"))
    return out


def _gradio_calls(tree: ast.Module) -> Iterator[tuple[str, bool, ast.Call]]:
    found = facts(tree)
    if not found.names.imported:
        return
    for node in found.calls:
        name = _callable_name(node, found.names)
        if name is not None:
            yield name[0], name[1], node


@rule(
    "gradio-incompatible",
    Severity.ERROR,
    fix_title="Drop the argument or move it where Gradio 6 expects it",
    url=_GRADIO_MIGRATION,
)
def gradio_incompatible(space: SpaceFolder) -> Iterator[Hit]:
    """A Gradio call passes a keyword argument the pinned Gradio rejects or moved.

    ## What it does
    Finds, through the AST of every Python file that imports gradio, the calls named in
    `gradio.forbidden_kwargs` and the keyword arguments forbidden for each: by default
    `launch(show_api=...)` and `gr.Blocks(theme=..., css=..., js=..., head=...)`, plus
    `show_api=` on event listeners. It follows `import gradio as gr`,
    `from gradio import Blocks as B`, `with gr.Blocks(...) as demo:`,
    `demo.queue().launch(...)` and `**kwargs` splats of a literal dict or `dict(...)`.
    Capitalised names (`Blocks`) must come from gradio; lower-case ones (`launch`) are
    method names on any object.

    ## Why is this bad?
    `launch(show_api=False)` is a `TypeError` in Gradio 6, so the Space builds and then
    crashes at start-up; `Blocks(theme=...)` is ignored with a warning since the theme
    moved to `launch()`.

    ## Example
    ```python
    with gr.Blocks(theme=gr.themes.Soft()) as demo:
        ...
    demo.queue().launch(show_api=False)
    ```
    Use instead:
    ```python
    with gr.Blocks() as demo:
        ...
    demo.queue().launch(theme=gr.themes.Soft(), footer_links=["gradio", "settings"])
    ```
    """
    forbidden: dict[str, dict[str, str]] = {}
    for name, kwargs in space.policy["gradio"]["forbidden_kwargs"].items():
        forbidden[name] = kwargs if isinstance(kwargs, dict) else dict.fromkeys(kwargs, "")
    for rel, module in space.python.items():
        if module.tree is None:
            continue
        assigned = facts(module.tree).assigned
        for name, from_gradio, call in _gradio_calls(module.tree):
            bad = forbidden.get(name)
            if not bad or (name[:1].isupper() and not from_gradio):
                continue
            for kw in _kwargs(call, assigned):
                if kw.name in bad:
                    why = f": {bad[kw.name]}" if bad[kw.name] else ""
                    via = f" via {kw.via}" if kw.via else ""
                    line = kw.line if kw.via is None else call.lineno
                    yield Hit(rel, line, f"{name}({kw.name}=...){via}{why}")


# ------------------------------------------------------------ where the app listens


@dataclass(frozen=True)
class _Setting:
    value: object  # str/int, None (not set: the default applies) or _UNKNOWN
    rel: str
    line: int
    origin: str  # human words: "launch(server_port=...)", "ENV GRADIO_SERVER_PORT"


def _evaluate(node: ast.AST | None, env: dict[str, tuple[str, int]]) -> object:
    """A literal, an ``os.environ.get``/``os.getenv`` with the Dockerfile's ENV, or int()."""
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Call):
        name = _dotted(node.func) or ""
        if name in {"int", "str"} and len(node.args) == 1:
            inner = _evaluate(node.args[0], env)
            if name == "int" and isinstance(inner, str) and inner.strip().isdigit():
                return int(inner)
            return inner
        if name.endswith(("environ.get", "getenv")) and node.args:
            key = node.args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                if key.value in env:
                    return env[key.value][0]
                return _evaluate(node.args[1], env) if len(node.args) > 1 else None
    if isinstance(node, ast.Subscript) and (_dotted(node.value) or "").endswith("environ"):
        key = node.slice
        if isinstance(key, ast.Constant) and key.value in env:
            return env[key.value][0]
    return _UNKNOWN


def _launches(space: SpaceFolder) -> list[tuple[str, ast.Call, list[_Kwarg]]]:
    """``launch(...)`` calls of the app file (and ``uvicorn.run``), with their kwargs."""
    rel = space.policy["app"]["file"]
    module = space.python.get(rel)
    if module is None or module.tree is None:
        return []
    assigned = facts(module.tree).assigned
    found = []
    for name, _from_gradio, call in _gradio_calls(module.tree):
        if name == "launch":
            found.append(("launch", call, _kwargs(call, assigned)))
    for node in facts(module.tree).calls:
        if _dotted(node.func) == "uvicorn.run":
            found.append(("uvicorn.run", node, _kwargs(node, assigned)))
    return found


def _setting(
    space: SpaceFolder,
    kind: str,
    call: ast.Call,
    kwargs: list[_Kwarg],
    kwarg: str,
    env_name: str | None,
    default: object,
) -> _Setting:
    rel = space.policy["app"]["file"]
    env = space.env()
    for kw in kwargs:
        if kw.name == kwarg:
            value = _evaluate(kw.value, env)
            if value is not None:
                return _Setting(value, rel, kw.line, f"{kind}({kwarg}=...)")
    if env_name and env_name in env:
        value, line = env[env_name]
        return _Setting(value, "Dockerfile", line, f"ENV {env_name}")
    return _Setting(default, rel, call.lineno, f"{kind}() without {kwarg}")


@rule(
    "app-listen-address",
    Severity.ERROR,
    fix_title='launch(server_name="0.0.0.0"), or ENV GRADIO_SERVER_NAME=0.0.0.0',
)
def app_listen_address(space: SpaceFolder) -> Iterator[Hit]:
    """The app does not listen on 0.0.0.0, so the Space's probe never reaches it.

    ## What it does
    For every `launch(...)` in `app.file` (and `uvicorn.run(...)`), works out the host it
    binds: `server_name=` (a literal, or `os.environ.get(...)` with the Dockerfile's
    `ENV` and the default), else `GRADIO_SERVER_NAME` from the Dockerfile's `ENV`, else
    Gradio's default 127.0.0.1. It must be one of `app.listen` (`0.0.0.0`, `::`).

    ## Why is this bad?
    An app on 127.0.0.1 inside the container cannot be reached from outside it. The
    Space then waits and reports "Launch timed out, workload was not healthy after 30
    min", the seed's classic failure.

    ## Example
    ```python
    demo.launch()            # 127.0.0.1 unless GRADIO_SERVER_NAME is set
    ```
    Use instead:
    ```python
    demo.launch(server_name="0.0.0.0", server_port=7860)
    ```
    """
    listen = set(space.policy["app"]["listen"])
    for kind, call, kwargs in _launches(space):
        kwarg, env_name = ("server_name", "GRADIO_SERVER_NAME")
        if kind == "uvicorn.run":
            kwarg, env_name = "host", None
        setting = _setting(space, kind, call, kwargs, kwarg, env_name, GRADIO_DEFAULT_HOST)
        if setting.value is _UNKNOWN or setting.value in listen:
            continue
        yield Hit(
            setting.rel,
            setting.line,
            f"the app listens on {setting.value} ({setting.origin}), not on "
            f"{' or '.join(sorted(listen))}",
        )


def _port_of(value: object) -> object:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


_HEALTH_PORT = re.compile(r"(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):(\d+)")


@rule(
    "app-port-mismatch",
    Severity.ERROR,
    fix_title="Use one port everywhere: README app_port, EXPOSE, launch(server_port=...)",
)
def app_port_mismatch(space: SpaceFolder) -> Iterator[Hit]:
    """README `app_port`, Dockerfile `EXPOSE` and the port app.py launches on disagree.

    ## What it does
    Takes README's `app_port` (7860 when absent) as the port the Space probes and
    checks against it: `app.port` of the policy, every port of the final stage's
    `EXPOSE`, the port of each `launch()` (`server_port=` literal or
    `os.environ.get("GRADIO_SERVER_PORT", "7860")`, else `ENV GRADIO_SERVER_PORT`, else
    Gradio's 7860) and the port of a `HEALTHCHECK` URL on localhost.

    ## Why is this bad?
    The Hub sends traffic only to `app_port`. An app on another port looks dead: the
    Space never turns healthy, and the seed lists "wrong port configuration" among its
    runtime errors.

    ## Example
    ```yaml
    app_port: 7860
    ```
    ```python
    demo.launch(server_name="0.0.0.0", server_port=8000)
    ```
    """
    fm = space.front_matter
    readme_line = None
    port: object = GRADIO_DEFAULT_PORT
    if fm is not None and fm.data is not None and "app_port" in fm.data:
        port, readme_line = fm.data["app_port"], fm.line_of("app_port")
        if not isinstance(port, int) or isinstance(port, bool):
            return  # readme-front-matter reports a non-numeric app_port
    source = "README app_port" if readme_line else "the default app_port"
    want = space.policy["app"]["port"]
    if want is not None and port != want:
        yield Hit("README.md", readme_line or 1, f"app_port is {port}; the policy wants {want}")
    doc = space.dockerfile
    if doc is not None:
        start = doc.stages[-1].line
        for instruction in doc.find("EXPOSE"):
            if instruction.line < start:
                continue
            ports = {
                int(p.split("/")[0]) for p in instruction.value.split() if p.split("/")[0].isdigit()
            }
            if ports and port not in ports:
                shown = ", ".join(str(p) for p in sorted(ports))
                yield Hit(
                    "Dockerfile",
                    instruction.line,
                    f"EXPOSE {shown} does not include {source} {port}",
                )
        for instruction in doc.find("HEALTHCHECK"):
            for match in _HEALTH_PORT.finditer(instruction.value):
                if instruction.line > start and int(match.group(1)) != port:
                    yield Hit(
                        "Dockerfile",
                        instruction.line,
                        f"HEALTHCHECK probes port {match.group(1)}, not {source} {port}",
                    )
    for kind, call, kwargs in _launches(space):
        kwarg, env_name = ("server_port", "GRADIO_SERVER_PORT")
        if kind == "uvicorn.run":
            kwarg, env_name = "port", None
        default = GRADIO_DEFAULT_PORT if kind == "launch" else 8000
        setting = _setting(space, kind, call, kwargs, kwarg, env_name, default)
        value = _port_of(setting.value)
        if value is _UNKNOWN or value == port:
            continue
        yield Hit(
            setting.rel,
            setting.line,
            f"the app listens on port {value} ({setting.origin}), not {source} {port}",
        )
