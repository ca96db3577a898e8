"""Dockerfile rules: a pinned, trusted base; exact pip pins; CUDA torch; no build-time
downloads; a health check; the uid-1000 user Spaces run as."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator

from spacetrain.dockerfile import (
    Dockerfile,
    Instruction,
    PipRequirement,
    expand,
    split_reference,
)
from spacetrain.inputs import parse_json
from spacetrain.lint.globs import glob_full_match
from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.pyfacts import facts
from spacetrain.lint.registry import rule
from spacetrain.lint.space_folder import SpaceFolder

DF = "Dockerfile"
_DOCKER_HUB = ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/")
_HUB_HOSTS = ("huggingface.co/", "hf.co/")
_PY_DOWNLOADS = ("from_pretrained", "snapshot_download", "hf_hub_download", "load_dataset")


@rule(
    "dockerfile-invalid",
    Severity.ERROR,
    fix_title="Make the Dockerfile a UTF-8 text file that starts its stage with FROM",
)
def dockerfile_invalid(space: SpaceFolder) -> Iterator[Hit]:
    """The Dockerfile cannot be read or parsed: empty, binary, not UTF-8, no FROM, bad shell.

    ## What it does
    Reports a `Dockerfile` that is empty, binary, not UTF-8 or has no `FROM`, a heredoc
    that is never closed and a `RUN` whose shell quoting does not parse. The other
    Dockerfile rules need a parsed file, so they stay quiet until this one is fixed.

    ## Why is this bad?
    The Space's build would fail at once, after an upload and a rebuild wait.

    ## Example
    ```dockerfile
    RUN pip install "trl==1.16.0      # unterminated quote
    ```
    """
    doc, problem = space.dockerfile_result
    if problem is not None:
        line, detail = problem
        yield Hit(DF, line, f"Dockerfile {detail}")
    if doc is not None:
        for line, detail in doc.problems:
            yield Hit(DF, line, detail)


def _resolved_reference(doc: Dockerfile, reference: str) -> str | None:
    """``FROM ${BASE}`` with the global ARG defaults filled in; None when one has none."""
    filled = expand(reference, doc.global_args())
    return filled or None


def _normalise(image: str) -> str:
    lowered = image.lower()
    for prefix in _DOCKER_HUB:
        if lowered.startswith(prefix):
            return image[len(prefix) :]
    return image


def _base_images(space: SpaceFolder) -> Iterator[tuple[int, str, str | None]]:
    """(line, reference, resolved reference or None) for every FROM of an image."""
    doc = space.dockerfile
    if doc is None:
        return
    for stage in doc.stages:
        if stage.from_stage or stage.reference.lower() == "scratch":
            continue
        resolved = _resolved_reference(doc, stage.reference) if stage.has_variable else None
        yield stage.line, stage.reference, resolved if stage.has_variable else stage.reference


@rule(
    "base-image-unpinned",
    Severity.ERROR,
    fix_title="Pin a version tag (nvidia/cuda:12.6.3-base-ubuntu24.04) or an @sha256 digest",
)
def base_image_unpinned(space: SpaceFolder) -> Iterator[Hit]:
    """A base image has no tag, or the tag `latest`, in some stage.

    ## What it does
    Checks every `FROM` (every stage) and every image a `COPY --from=` or a
    `RUN --mount=…,from=` pulls. A digest (`@sha256:…`) counts as pinned; a stage
    built from an earlier stage's alias is skipped; `FROM ${BASE}` is checked with the
    default of its global `ARG`, and fails when there is none.

    ## Why is this bad?
    `latest` and untagged images move under you: the same commit builds a different
    image next week. The seed process traced its build timeouts to `:latest` images.

    ## Example
    ```dockerfile
    FROM huggingface/transformers-pytorch-gpu:latest
    ```
    Use instead:
    ```dockerfile
    FROM nvidia/cuda:12.6.3-base-ubuntu24.04
    ```
    """
    for line, reference, resolved in _base_images(space):
        if resolved is None:
            yield Hit(
                DF, line, f"base image {reference} depends on a build argument with no default"
            )
            continue
        _image, tag, digest = split_reference(resolved)
        if digest:
            continue
        if tag is None:
            yield Hit(DF, line, f"base image {resolved} has no tag (Docker takes :latest)")
        elif tag == "latest":
            yield Hit(DF, line, f"base image {resolved} uses the moving tag :latest")
    for line, how, image in _copied_images(space):
        _image, tag, digest = split_reference(image)
        if digest is None and tag in (None, "latest"):
            yield Hit(DF, line, f"{how}={image} has no version tag (Docker takes :latest)")


@rule(
    "base-image-untrusted",
    Severity.ERROR,
    fix_title="Use an image of base_images.allow in policy/space.yaml (or extend the list)",
)
def base_image_untrusted(space: SpaceFolder) -> Iterator[Hit]:
    """A base image is not on the policy's allowlist.

    ## What it does
    Matches every `FROM` image against the globs of `base_images.allow` (by default
    only NVIDIA's `nvidia/cuda:*`, as the seed's process asks; a project opts other bases
    in with its own `policy/space.yaml`, e.g. `python:3.1[1-9]*`). Docker Hub's
    `docker.io/library/` prefix is ignored. A digest-only reference matches a glob whose
    tag part is `*`.

    ## Why is this bad?
    Big convenience images such as `huggingface/transformers-pytorch-gpu` or
    `huggingface/autotrain-advanced` bring their own, unpinned Python stack that fights
    the Dockerfile's pins, and are only ever published as `latest`.

    ## Example
    ```dockerfile
    FROM huggingface/autotrain-advanced:latest
    ```
    Use instead:
    ```dockerfile
    FROM nvidia/cuda:12.6.3-base-ubuntu24.04@sha256:c87e7893…5ee0e
    ```
    """
    allow = space.policy["base_images"]["allow"]
    for line, reference, resolved in _base_images(space):
        if resolved is None:
            continue  # base-image-unpinned already says why it cannot be checked
        image, tag, _digest = split_reference(resolved)
        image = _normalise(image)
        ok = False
        for pattern in allow:
            p_image, p_tag, _ = split_reference(pattern)
            if tag is None:
                ok = glob_full_match(image, p_image) and p_tag in (None, "*")
            else:
                ok = glob_full_match(f"{image}:{tag}", pattern if p_tag else f"{pattern}:*")
            if ok:
                break
        if not ok:
            shown = reference if reference == resolved else f"{reference} (= {resolved})"
            yield Hit(DF, line, f"base image {shown} is not on the allowlist")


def _copied_images(space: SpaceFolder) -> Iterator[tuple[int, str, str]]:
    """(line, how, image) of every ``COPY --from=<image>`` and ``RUN --mount=…,from=<image>``
    that names an image, not a stage (ARG defaults expanded)."""
    doc = space.dockerfile
    if doc is None:
        return
    aliases = {s.alias.lower() for s in doc.stages if s.alias}
    for instruction in doc.instructions:
        for flag in instruction.flags:
            if instruction.keyword in {"COPY", "ADD"} and flag.startswith("--from="):
                source, how = flag.partition("=")[2].strip(), "COPY --from"
            elif instruction.keyword == "RUN" and flag.startswith("--mount="):
                fields = dict(f.partition("=")[::2] for f in flag[8:].split(","))
                source, how = fields.get("from", "").strip(), "RUN --mount=from"
            else:
                continue
            if "$" in source:
                source = expand(source, doc.scope(instruction.line)) or source
            if source and not source.isdigit() and source.lower() not in aliases:
                yield instruction.line, how, source


@rule(
    "base-image-digest",
    Severity.WARNING,
    fix_title="Add the image's @sha256 digest after its tag (image:tag@sha256:…)",
)
def base_image_digest(space: SpaceFolder) -> Iterator[Hit]:
    """An image the build pulls is not pinned by digest.

    ## What it does
    Checks every `FROM` image, every `COPY --from=<image>` and every
    `RUN --mount=…,from=<image>` (an image, not an earlier stage) for an `@sha256:`
    digest. `FROM ${BASE}` is checked with its `ARG` default.
    A warning by default; this repository's own policy makes it an error.

    ## Why is this bad?
    A tag is a name that can be moved or deleted: NVIDIA re-pushes CUDA tags and deletes
    end-of-life ones, so the same commit builds another image, or none, later. The seed
    asks for pinned NVIDIA CUDA base images; the digest is the pin, the tag says which.

    ## Example
    ```dockerfile
    FROM nvidia/cuda:12.6.3-base-ubuntu24.04
    ```
    Use instead:
    ```dockerfile
    FROM nvidia/cuda:12.6.3-base-ubuntu24.04@sha256:c87e7893…5ee0e
    ```
    """
    for line, _reference, resolved in _base_images(space):
        if resolved is not None and split_reference(resolved)[2] is None:
            yield Hit(DF, line, f"base image {resolved} is not pinned by @sha256 digest")
    for line, how, image in _copied_images(space):
        if split_reference(image)[2] is None:
            yield Hit(DF, line, f"{how}={image} is not pinned by @sha256 digest")


_FULL_VERSION = re.compile(r"\d+\.\d+")


def floating_tag(tag: str) -> bool:
    """``slim``, ``3-alpine``, ``lts``: no major.minor version, so it moves with releases."""
    return tag != "latest" and _FULL_VERSION.search(tag) is None


@rule(
    "base-image-floating-tag",
    Severity.WARNING,
    fix_title="Name a major.minor version in the tag (python:3.11.14-slim-bookworm)",
)
def base_image_floating_tag(space: SpaceFolder) -> Iterator[Hit]:
    """An image's tag names no major.minor version (`python:slim`, `node:20-alpine`).

    ## What it does
    Checks the tag of every `FROM`, `COPY --from=<image>` and `RUN --mount=…,from=<image>`
    image that has no digest: a tag without a `major.minor` number (`slim`, `3-alpine`,
    `lts`, `bookworm`) is reported. `latest` and untagged images are
    `base-image-unpinned`'s.

    ## Why is this bad?
    Such a tag is a pointer the publisher moves to each new release: `python:3-slim`
    was Python 3.11 last year and is 3.13 today, so a rebuild silently changes the
    interpreter under pinned wheels that were resolved for the old one.

    ## Example
    ```dockerfile
    FROM python:slim
    ```
    Use instead:
    ```dockerfile
    FROM python:3.11.14-slim-bookworm
    ```
    """
    images = [(line, "base image", resolved) for line, _ref, resolved in _base_images(space)]
    images += [(line, how + "=", image) for line, how, image in _copied_images(space)]
    for line, how, image in images:
        if image is None:
            continue
        _name, tag, digest = split_reference(image)
        if digest is None and tag is not None and floating_tag(tag):
            shown = f"{how}{image}" if how.endswith("=") else f"{how} {image}"
            yield Hit(DF, line, f"{shown}: the tag {tag} names no major.minor version")


@rule(
    "exec-form-invalid",
    Severity.ERROR,
    fix_title='Write the exec form as a JSON array of double-quoted strings: ["python", "app.py"]',
    url="https://docs.docker.com/reference/dockerfile/#shell-and-exec-form",
)
def exec_form_invalid(space: SpaceFolder) -> Iterator[Hit]:
    """A `CMD`, `ENTRYPOINT` or `RUN` starts with `[` but is not a JSON array of strings.

    ## What it does
    Parses every `CMD`, `ENTRYPOINT`, `RUN` and `SHELL` whose value starts with `[` as
    JSON and reports one that is not a list of strings (single quotes, a trailing
    comma, a number).

    ## Why is this bad?
    Docker does not reject it: it silently runs the text in shell form,
    `/bin/sh -c "['python', 'app.py']"`, and the container exits at once with
    `/bin/sh: 1: [python,: not found`; the Space reports a failed start after its build.

    ## Example
    ```dockerfile
    CMD ['python', 'app.py']
    ```
    Use instead:
    ```dockerfile
    CMD ["python", "app.py"]
    ```
    """
    doc = space.dockerfile
    if doc is None:
        return
    for instruction in doc.find("CMD", "ENTRYPOINT", "RUN", "SHELL"):
        value = instruction.value
        if not value.startswith("["):
            continue
        try:
            argv = parse_json(value)
        except json.JSONDecodeError as exc:
            yield Hit(DF, instruction.line, f"{instruction.keyword} is not valid JSON: {exc.msg}")
            continue
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            yield Hit(DF, instruction.line, f"{instruction.keyword} is not a JSON list of strings")


_UNPINNED = {
    "file": "installs whatever {text} lists; pin each package in the Dockerfile instead",
    "url": "installs {text} from a URL, not an exact name==version pin",
    "path": "installs the local path {text}, not an exact name==version pin",
    "editable": "is an editable install of {text}, not an exact pin",
    "variable": "{text} is only known at build time; write the exact pin out",
    "invalid": "{text} is not a valid requirement",
}


def _unpinned_message(req: PipRequirement) -> tuple[str, str | None]:
    if req.kind in _UNPINNED:
        return _UNPINNED[req.kind].format(text=req.text), None
    name = req.name or req.text
    if not req.specifier:
        return f"{name} is not pinned with ==", f"write {name}==<version>"
    return f"{req.text} is a range, not an exact == pin", f"write {name}==<version>"


@rule(
    "pip-unpinned",
    Severity.ERROR,
    fix_title="Pin every package with ==, in the Dockerfile itself",
    url="https://pip.pypa.io/en/stable/topics/repeatable-installs/",
)
def pip_unpinned(space: SpaceFolder) -> Iterator[Hit]:
    """A pip or uv install has a requirement that is not an exact `==` pin.

    ## What it does
    Reads every `pip` (`pip3.11`, a path to pip, `python3 -B -m pip`, options before
    `install`), `uv pip` and `pipx` install in every `RUN`, wherever the shell runs it
    (continued lines, `&&` chains, `if`/`for`/`case` bodies, subshells, `sh -c`,
    heredoc scripts, behind `sudo`/`env`), with pip's own option grammar, and reports
    each requirement without exactly one `==` version: bare names (`--upgrade pip`
    too), ranges, wildcards, `-r` files, URLs, paths, editable installs and variables.
    The finding points at the physical line of the requirement.

    ## Why is this bad?
    Unpinned packages make the Space build a different environment on every rebuild;
    the seed's builds broke on exactly this. `spacetrain pins` also turns these pins
    into the test environment's constraints, so an unpinned package is an untested one.

    ## Example
    ```dockerfile
    RUN pip install --upgrade pip && pip install "gradio>=5" trl
    ```
    Use instead:
    ```dockerfile
    RUN pip install pip==25.3 && pip install gradio==6.31.0 trl==1.16.0
    ```
    """
    doc = space.dockerfile
    if doc is None:
        return
    for install in doc.pip_installs():
        for req in install.requirements:
            if req.kind == "requirement" and req.pinned_version is not None:
                continue
            message, hint = _unpinned_message(req)
            yield Hit(DF, req.line, message, hint)


@rule(
    "torch-cpu-wheel",
    Severity.ERROR,
    fix_title="Install torch from a PyTorch CUDA index: --index-url "
    "https://download.pytorch.org/whl/cu126",
    url="https://pytorch.org/get-started/locally/",
)
def torch_cpu_wheel(space: SpaceFolder) -> Iterator[Hit]:
    """torch, torchvision or torchaudio is not installed from a PyTorch CUDA index.

    ## What it does
    For every install of a package in `pip.torch_packages`, requires an index URL
    (`--index-url`, `--extra-index-url`, or `PIP_INDEX_URL`/`PIP_EXTRA_INDEX_URL` in
    `ENV`) that matches `pip.cuda_index` (`https://download.pytorch.org/whl/cuXYZ`), or
    uv's `--torch-backend cuXYZ` / `UV_TORCH_BACKEND=cuXYZ`, and reports a `+cpu` version
    or the CPU index outright. An index given by a build argument without a default is
    left alone: only the build knows it.

    ## Why is this bad?
    Without the CUDA index pip may take a CPU-only or a wrong-CUDA build; training then
    runs on the CPU of a GPU Space, or torch fails to see the GPU, after a full build.

    ## Example
    ```dockerfile
    RUN pip3 install torch==2.1.0 torchvision==0.16.0
    ```
    Use instead:
    ```dockerfile
    RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126
    ```
    """
    doc = space.dockerfile
    if doc is None:
        return
    names = {n.lower().replace("_", "-") for n in space.policy["pip"]["torch_packages"]}
    cuda = re.compile(space.policy["pip"]["cuda_index"])
    env = doc.env()
    env_urls = [
        url
        for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
        for url in env.get(key, ("", 0))[0].split()
    ]
    for install in doc.pip_installs():
        urls = [w.text for w in (*install.index_urls, *install.extra_index_urls)] + env_urls
        if any("$" in url for url in urls):  # --index-url "$TORCH_INDEX_URL": its ARG value
            scope = doc.scope(install.line + 1)
            urls = [expand(url, scope) or "$" if "$" in url else url for url in urls]
        if install.torch_backend:
            backend = expand(install.torch_backend, doc.scope(install.line + 1)) or "$"
            urls.append(f"https://download.pytorch.org/whl/{backend}")
        for req in install.requirements:
            if req.name not in names:
                continue
            if "+cpu" in req.specifier:
                yield Hit(DF, req.line, f"{req.text} is a CPU-only build of {req.name}")
            elif any(cuda.search(url) for url in urls) or any("$" in url for url in urls):
                continue  # a CUDA index, or one only the build knows
            elif any("/whl/cpu" in url for url in urls):
                yield Hit(DF, req.line, f"{req.name} is installed from PyTorch's CPU index")
            else:
                yield Hit(DF, req.line, f"{req.name} is installed without a PyTorch CUDA index")


def _final_stage(doc: Dockerfile) -> tuple[int, list[Instruction]]:
    """The last FROM's line and the instructions after it."""
    start = doc.stages[-1].line
    return start, [i for i in doc.instructions if i.line > start]


@rule(
    "healthcheck-missing",
    Severity.ERROR,
    fix_title="Add HEALTHCHECK CMD curl -f http://localhost:7860/ || exit 1",
    url="https://docs.docker.com/reference/dockerfile/#healthcheck",
)
def healthcheck_missing(space: SpaceFolder) -> Iterator[Hit]:
    """The final stage has no HEALTHCHECK (or disables it with `HEALTHCHECK NONE`).

    ## What it does
    Looks for a `HEALTHCHECK` instruction after the last `FROM`.

    ## Why is this bad?
    The seed's runbook requires one: a health check against the app port makes
    `spacetrain build` (and anyone running the image) notice an app that never
    answers, the failure that the Space reports only after 30 minutes as "Launch timed
    out, workload was not healthy".

    ## Example
    ```dockerfile
    EXPOSE 7860
    CMD ["python", "app.py"]
    ```
    Use instead:
    ```dockerfile
    HEALTHCHECK --interval=30s --timeout=5s CMD curl -f http://localhost:7860/ || exit 1
    ```
    """
    doc = space.dockerfile
    if doc is None:
        return
    start, final = _final_stage(doc)
    checks = [i for i in final if i.keyword == "HEALTHCHECK"]
    if not checks:
        yield Hit(DF, start, "the image has no HEALTHCHECK")
    elif checks[-1].value.strip().upper() == "NONE":
        yield Hit(DF, checks[-1].line, "HEALTHCHECK NONE switches the health check off")


def _downloads_in_python(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in facts(tree).calls:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in _PY_DOWNLOADS:
            found.append((node.lineno, name))
    return found


@rule(
    "build-time-download",
    Severity.ERROR,
    fix_title="Download models and datasets at run time (in app.py/train.py), not in a RUN",
)
def build_time_download(space: SpaceFolder) -> Iterator[Hit]:
    """A RUN downloads a model or dataset while the image builds.

    ## What it does
    Reports, in every `RUN`: `from_pretrained`, `snapshot_download`, `hf_hub_download`
    and `load_dataset` (e.g. in `python -c`), `huggingface-cli download`, `hf download`,
    `git clone` of a Hub repository, `curl`/`wget` of a Hub URL, and `python X.py` of a
    Space file whose code calls one of those functions.

    ## Why is this bad?
    Weights baked into a layer make every code change a multi-gigabyte rebuild, the
    build has no GPU and no Space secrets unless mounted, and the seed traced its
    "Launch timed out" failures partly to downloads during the build.

    ## Example
    ```dockerfile
    RUN python -c "from transformers import AutoModel; AutoModel.from_pretrained('x/y')"
    ```
    Use instead: load the model in `train.py` when training starts.
    """
    doc = space.dockerfile
    if doc is None:
        return
    for command in doc.commands:
        words = command.argv
        texts = [w.text for w in words]
        head = texts[0].rsplit("/", 1)[-1] if texts else ""
        reported = False
        for word in (*words, *command.stdin):  # python <<EOF: the body is Python
            for needle in _PY_DOWNLOADS:
                if needle in word.text:
                    yield Hit(DF, word.line, f"{needle} in a RUN downloads at build time")
                    reported = True
                    break
        if reported:
            continue
        if head == "huggingface-cli" and "download" in texts[1:]:
            yield Hit(DF, words[0].line, "huggingface-cli download runs at build time")
        elif head == "hf" and texts[1:2] == ["download"]:
            yield Hit(DF, words[0].line, "hf download runs at build time")
        elif head == "git" and "clone" in texts[1:3]:
            for word in words:
                if any(host in word.text for host in _HUB_HOSTS):
                    yield Hit(DF, word.line, f"git clone of the Hub repo {word.text} at build time")
        elif head in {"curl", "wget"}:
            for word in words:
                if any(host in word.text for host in _HUB_HOSTS):
                    yield Hit(DF, word.line, f"{head} downloads {word.text} at build time")
        elif re.fullmatch(r"python(3(\.\d+)?)?", head):
            scripts = [t for t in texts[1:] if t.endswith(".py")]
            for script in scripts[:1]:
                module = space.python.get(script.removeprefix("./").rsplit("/", 1)[-1])
                if module is None or module.tree is None:
                    continue
                calls = _downloads_in_python(module.tree)
                if calls:
                    line, name = calls[0]
                    yield Hit(
                        DF,
                        words[0].line,
                        f"RUN python {script} downloads at build time ({name} on line {line})",
                    )


_USER_CMDS = {"useradd", "adduser"}


def _created_users(doc: Dockerfile) -> dict[str, int | None]:
    """Users created by useradd/adduser in RUNs: name -> uid (None when not given)."""
    users: dict[str, int | None] = {}
    for command in doc.commands:
        texts = [w.text for w in command.argv]
        if not texts or texts[0].rsplit("/", 1)[-1] not in _USER_CMDS:
            continue
        if any("$" in t for t in texts):  # useradd -u $UID: the ARG/ENV value Docker gives
            scope = doc.scope(command.instruction.line)
            texts = [expand(t, scope) or t if "$" in t else t for t in texts]
        uid: int | None = None
        name = None
        it = iter(texts[1:])
        for text in it:
            if text in {"-u", "--uid"}:
                value = next(it, "")
                uid = int(value) if value.isdigit() else None
            elif text.startswith("--uid="):
                value = text.partition("=")[2]
                uid = int(value) if value.isdigit() else None
            elif text in {"-g", "--gid", "-G", "--groups", "-d", "--home", "--home-dir", "-s",
                          "--shell", "-c", "--comment", "--gecos", "--ingroup", "-k", "-K",
                          "-e", "-f", "-p", "--password"}:  # fmt: skip
                next(it, None)
            elif not text.startswith("-"):
                name = text
        if name:
            users[name] = uid
    return users


def _inherited_user(doc: Dockerfile) -> list[Instruction]:
    """The USER a final ``FROM <earlier stage>`` inherits: the last in its chain of stages."""
    by_alias = {s.alias.lower(): s for s in doc.stages if s.alias}
    stage = doc.stages[-1]
    seen: set[int] = set()
    while stage.from_stage and stage.index not in seen:
        seen.add(stage.index)
        parent = by_alias.get((expand(stage.reference, doc.global_args()) or "").lower())
        if parent is None:
            return []
        end = doc.stages[parent.index + 1].line if parent.index + 1 < len(doc.stages) else 0
        users = [i for i in doc.find("USER") if parent.line < i.line < end]
        if users:
            return users[-1:]
        stage = parent
    return []


_SYSTEM_DIRS = ("/usr/", "/bin/", "/sbin/", "/opt/", "/etc/")


def _system_tool_copy(instruction: Instruction) -> bool:
    """``COPY --from=… /uv /usr/local/bin/uv``: a tool for everyone, rightly root's."""
    if not any(f.startswith("--from=") for f in instruction.flags):
        return False
    words = instruction.value.replace(",", " ").split()
    return len(words) >= 2 and words[-1].strip("[]\"'").startswith(_SYSTEM_DIRS)


@rule(
    "user-not-1000",
    Severity.WARNING,
    fix_title="RUN useradd -m -u 1000 user, USER user, and COPY --chown=user",
)
def user_not_1000(space: SpaceFolder) -> Iterator[Hit]:
    """The image does not run as uid 1000, or copies files without `--chown`.

    ## What it does
    In the final stage (or the stage it is built `FROM`, whose `USER` it inherits): warns
    when there is no `USER`, when the last `USER` is root or another uid than `user.uid`
    (1000), when it names a user that no `useradd -u 1000` in the Dockerfile creates, and
    at every `COPY`/`ADD` without `--chown` (except a `COPY --from=…` into a system folder
    such as `/usr/local/bin`: a tool, not app files). `ARG`/`ENV` values are expanded in
    `USER $NAME` and `useradd -u $UID`.

    ## Why is this bad?
    Spaces run the container as uid 1000. An image built for root then fails at run
    time with `PermissionError` on its own files, `~/.cache/huggingface` or Gradio's
    `.gradio/` folder, although it worked in `docker run` locally.

    ## Example
    ```dockerfile
    FROM python:3.11-slim-bookworm
    COPY app.py .
    CMD ["python", "app.py"]
    ```
    Use instead:
    ```dockerfile
    RUN useradd -m -u 1000 user
    USER user
    COPY --chown=user app.py .
    ```
    """
    doc = space.dockerfile
    if doc is None:
        return
    want = space.policy["user"]["uid"]
    start, final = _final_stage(doc)
    users = _created_users(doc)
    for instruction in final:
        if instruction.keyword in {"COPY", "ADD"} and not any(
            f.startswith("--chown") for f in instruction.flags
        ):
            if _system_tool_copy(instruction):
                continue
            yield Hit(
                DF,
                instruction.line,
                f"{instruction.keyword} without --chown leaves the files owned by root",
                f"write {instruction.keyword} --chown=user ...",
            )
    user_lines = [i for i in final if i.keyword == "USER"] or _inherited_user(doc)
    if not user_lines:
        yield Hit(DF, start, f"the image has no USER: Spaces run it as uid {want}")
        return
    last = user_lines[-1]
    value = last.value
    if "$" in value:  # USER $NAME: Docker expands ARG/ENV values here
        value = expand(value, doc.scope(last.line)) or value
    user = value.split(":", 1)[0].strip()
    if user.isdigit():
        if int(user) != want:
            yield Hit(DF, last.line, f"USER {user} is not uid {want}, the uid Spaces run as")
    elif user == "root":
        yield Hit(DF, last.line, f"USER root: Spaces run the image as uid {want}")
    elif user not in users:
        yield Hit(DF, last.line, f"USER {user}: no useradd -u {want} {user} in this Dockerfile")
    elif users[user] != want:
        uid = users[user]
        shown = "no uid" if uid is None else f"uid {uid}"
        yield Hit(DF, last.line, f"USER {user} is created with {shown}, not -u {want}")
