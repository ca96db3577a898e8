"""QLoRA fine-tuning of one adapter: the Space's trainer (docs/architecture.md, "train.py").

    python train.py --base-model PATH_OR_ID --dataset PATH_OR_ID --output-dir DIR
        [--output-repo ID | --no-push] [--run-id ID] [--epochs 4] [--learning-rate 2e-4]
        [--lora-r 16] [--lora-alpha 32] [--max-length N] [--batch-size N] [--grad-accum N]
        [--seed N] [--model-revision REV] [--dataset-revision REV] [--packing auto|on|off]
    python train.py --params-file PARAMS.json --output-dir DIR      # how the Space runs it

It runs inside the Space image, so it imports only the pinned stack and the stdlib
(never ``spacetrain``). The base model is loaded in 4-bit NF4 with double quantization
(bitsandbytes also runs it on the CPU, which is how the tests train it), LoRA goes on
every linear layer, TRL's SFTTrainer trains it, and the adapter, ``run.json`` and a
model card are pushed in ONE commit whose message carries the run id.

Before loading anything it checks itself (:func:`preflight`: the token, the right to
write the output repo, the model and dataset at their revisions, the GPU when one is
expected) and stops on the first failing line; app.py's ``training_preflight`` answers
with the same checks before a run starts.

Progress goes to stdout twice per event: a line for people
(``[train] step 12/40 epoch 1.20 loss 2.3456 lr 1.8e-04 tok/s 950``) followed by one for
programs (``@@spacetrain {"event": "step", ...}``). The last line is always an
``@@spacetrain`` ``done`` or ``error`` event; ``done`` names the pushed repo and commit.

Exit codes: 0 ok; 1 training failed (CUDA out of memory says what to change), or was
stopped by SIGTERM (app.py's ``stop_training``: the ``error`` event's state is
``cancelled``); 2 bad input (bad argument, malformed or incomplete dataset line, unknown
model or dataset, rejected token), one line naming the file and line; 3 the Hub is
unreachable.
The token comes from the environment (``HF_TOKEN``) and is never printed or written.

The file reads top to bottom: 1 the contract (the parameter table), 2 errors, signals and
output, 3 arguments, 4 Hub calls, 5 the self-check, 6 data, 7 model, 8 loss mode and
packing, 9 training (:func:`train`, one named step per stage), 10 saving and pushing,
11 main.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hmac
import json
import logging
import math
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INFRA = 0, 1, 2, 3

# ------------------------------------------------------------------ 1. the contract
# The CLI <-> Space contract, defined ONCE, here. app.py imports it from this file; the
# spacetrain package loads this file too (spacetrain.contract), so the config, the CLI
# flags, the retrain form, app.py and this script share one table of parameters (names,
# types, ranges), one event prefix, one run-id pattern, one list of dataset formats and
# roles and one set of environment variable names. Top level: the stdlib only.
EVENT_PREFIX = "@@spacetrain "
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
RUN_ID_RE = re.compile(RUN_ID_PATTERN)
RUN_ID_HINT = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
ROLES = ("system", "user", "assistant", "tool")
FORMATS = ("messages", "prompt_completion")
# Environment variables the Space reads (the secret, and settings of the app and trainer).
ENV_TOKEN = "HF_TOKEN"  # noqa: S105 - a name, not a value; the Space's secret: a token that can write the output repo
ENV_RUNS_DIR = "SPACETRAIN_RUNS_DIR"  # where run folders live
ENV_HUB_DEADLINE = "SPACETRAIN_HUB_DEADLINE"  # seconds of Hub retries before exit 3
ENV_EXPECT_GPU = "SPACETRAIN_EXPECT_GPU"  # "1": a run on a CPU is a configuration error
# Where the pipeline runs (not in the Space): the value `spacetrain space setup` stores as the
# Space's HF_TOKEN secret. Named in every self-check line that asks for a token.
ENV_SPACE_TOKEN = "SPACE_HF_TOKEN"  # noqa: S105 - a name, not a value
MAX_TEXT = 256  # characters of a text parameter
MAX_PARAMS = 64 * 1024  # bytes of a params object (start_training's JSON, a --params-file)
# What the Space's API serves (the rules of "Who may drive the Space", README): the Space's
# own configuration decides, never the caller. See check_served and check_trigger.
ENV_OUTPUT_REPOS = "SPACETRAIN_OUTPUT_REPOS"  # comma-separated push targets (+ OUTPUT_REPO)
ENV_ALLOW_LOCAL_PATHS = "SPACETRAIN_ALLOW_LOCAL_PATHS"  # "1": model/dataset may be local paths
ENV_TRIGGER = "SPACETRAIN_TRIGGER"  # Space secret: when set, every state-changing call carries it
TRIGGER_KEY = "trigger"  # the params key the trigger travels under (never stored or logged)
# Hub ids as the Hub spells them: owner/name, each starting with a letter or digit.
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# Names that are not runs: the lock file of earlier versions sat beside the run folders
# (this one is ``.active.json``, which no run id can name: ids start with a letter or digit).
RESERVED_RUN_IDS = frozenset({"active.json"})


class ParamError(ValueError):
    """A training parameter outside the contract: one line says which and why."""


@dataclass(frozen=True)
class Param:
    """One training parameter, as config, CLI, retrain form, app.py and train.py see it.

    ``variable`` is the Space variable holding a run's default; ``flag`` is this script's
    option; ``default`` what the script uses when neither gives a value; ``low``/``high``
    bound a number (``open_low``: strictly above ``low``); ``hyper`` marks the
    hyper-parameters an adapter's ``train`` table and the retrain form may set.
    """

    name: str
    type: type
    variable: str | None
    flag: str | None
    default: Any = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    hyper: bool = False
    help: str = ""

    def describe(self) -> str:
        """The accepted values in words: "a number > 0 and <= 1000", "auto, on or off"."""
        if self.choices:
            return ", ".join(self.choices[:-1]) + f" or {self.choices[-1]}"
        words = {bool: "true or false", str: "a string", int: "an integer"}
        kind = words.get(self.type, "a number")

        def number(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open_low else '>='} {number(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.open_high else '<='} {number(self.high)}")
        return kind + (f" {' and '.join(bounds)}" if bounds else "")


_PARAMS = (
    Param("base_model", str, "BASE_MODEL", "--base-model", help="Hub model id of the base"),
    Param("model_revision", str, "MODEL_REVISION", "--model-revision", help="its commit"),
    Param("dataset", str, "DATASET", "--dataset", help="Hub dataset id (JSONL chats)"),
    Param("dataset_revision", str, "DATASET_REVISION", "--dataset-revision", help="its commit"),
    Param("output_repo", str, "OUTPUT_REPO", "--output-repo", help="model repo to push to"),
    Param("push", bool, "PUSH", None, default=True, help="false: keep the adapter local"),
    Param("private", bool, "PRIVATE_REPO", "--private", default=False, help="a new repo is"),
    Param("run_id", str, None, "--run-id", help=RUN_ID_HINT),
    Param("epochs", float, "EPOCHS", "--epochs", 4.0, 0, 1000, open_low=True, hyper=True),
    Param("learning_rate", float, "LEARNING_RATE", "--learning-rate", 2e-4, 0, 1, True, hyper=True),
    Param("lora_r", int, "LORA_R", "--lora-r", 16, 1, 1024, hyper=True),
    Param("lora_alpha", int, "LORA_ALPHA", "--lora-alpha", 32, 1, 4096, hyper=True),
    Param("lora_dropout", float, "LORA_DROPOUT", "--lora-dropout", 0.05, 0, 1, open_high=True,
          hyper=True),
    Param("max_length", int, "MAX_LENGTH", "--max-length", 1024, 8, 131072, hyper=True,
          help="tokens per row"),
    Param("batch_size", int, "BATCH_SIZE", "--batch-size", 4, 1, 1024, hyper=True),
    Param("grad_accum", int, "GRAD_ACCUM", "--grad-accum", 4, 1, 1024, hyper=True),
    Param("warmup_ratio", float, "WARMUP_RATIO", "--warmup-ratio", 0.03, 0, 1, open_high=True,
          hyper=True, help="share of steps"),
    Param("seed", int, "SEED", "--seed", 42, 0, 2**32 - 1, hyper=True),
    Param("packing", str, "PACKING", "--packing", "auto", choices=("auto", "on", "off"),
          hyper=True, help="auto: pack only with a varlen attention kernel (flash attention "
          "on a GPU) and when padding would waste >20%"),
    Param("distributed", str, "DISTRIBUTED", "--distributed", "ddp", choices=("ddp", "fsdp"),
          hyper=True, help="under torchrun with several GPUs: ddp (a 4-bit copy of the base "
          "per GPU) or fsdp (FSDP-QLoRA: the base sharded, for a base too big for one GPU)"),
    Param("logging_steps", int, "LOGGING_STEPS", "--logging-steps", 10, 1, 100000, hyper=True,
          help="a step event every N steps"),
)  # fmt: skip
PARAMS: dict[str, Param] = {p.name: p for p in _PARAMS}
HYPERPARAMETERS = tuple(name for name, p in PARAMS.items() if p.hyper)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def check_param(name: str, value: Any, *, text: bool = False, source: str | None = None) -> Any:
    """``value`` checked against ``PARAMS[name]`` and coerced to its type.

    ``text=True`` also accepts the value written as text (Space variables, flags, a form);
    otherwise its type must already fit (an int is a float, a bool is never a number).
    ``source`` names the value in the error ("params.epochs", "Space variable EPOCHS").

    Raises:
        ParamError: unknown name, wrong type, out of range, not a choice; one line.
    """
    where = source or name
    spec = PARAMS.get(name)
    if spec is None:
        raise ParamError(f"{where}: unknown parameter (known: {', '.join(PARAMS)})")
    wanted = spec.describe()
    if spec.type is bool:
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if text and isinstance(value, str) else None
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ParamError(f"{where} must be true or false, got {value!r}")
    if spec.type is str:
        if not isinstance(value, str):
            raise ParamError(f"{where} must be a string, got {value!r}")
        value = value.strip()
        if not value:
            raise ParamError(f"{where} is empty")
        if len(value) > MAX_TEXT:
            raise ParamError(f"{where} is {len(value)} characters long; at most {MAX_TEXT}")
        if spec.choices and value not in spec.choices:
            raise ParamError(f"{where} must be {wanted}, got {value!r}")
        if name == "run_id" and not RUN_ID_RE.fullmatch(value):
            raise ParamError(f"{where} {value!r}: {RUN_ID_HINT}")
        if name == "run_id" and value.lower() in RESERVED_RUN_IDS:
            raise ParamError(f"{where} {value!r} is reserved (a file of the runs folder)")
        if name == "output_repo" and not is_hub_id(value):
            raise ParamError(f"{where} {value!r} is not a Hub repo id (owner/name)")
        return value
    number: int | float
    if isinstance(value, bool):
        raise ParamError(f"{where} must be {wanted}, got {value!r}")
    if isinstance(value, str) and text:
        try:
            number = float(value.strip())
        except ValueError:
            raise ParamError(f"{where} must be {wanted}, got {value!r}") from None
    elif isinstance(value, int | float):
        number = value
    else:
        raise ParamError(f"{where} must be {wanted}, got {value!r}")
    if not math.isfinite(number):
        raise ParamError(f"{where} must be {wanted}, got {value!r}")
    if spec.type is int:
        if not float(number).is_integer():
            raise ParamError(f"{where} must be {wanted}, got {value!r}")
        number = int(number)
    else:
        number = float(number)
    low, high = spec.low, spec.high
    if (
        (low is not None and (number <= low if spec.open_low else number < low))
        or (high is not None and (number >= high if spec.open_high else number > high))
    ):  # fmt: skip
        raise ParamError(f"{where} must be {wanted}, got {value!r}")
    return number


def is_hub_id(ref: str) -> bool:
    """``owner/name`` as the Hub accepts it: no path, URL, ``..`` or ``--``."""
    return (
        bool(HUB_ID_RE.fullmatch(ref))
        and len(ref) <= 96
        and ".." not in ref
        and "--" not in ref
        and not ref.endswith((".", ".git"))
    )


def local_paths_allowed(env: Mapping[str, str] | None = None) -> bool:
    """``SPACETRAIN_ALLOW_LOCAL_PATHS=1``: the Space may read model and dataset from its disk."""
    env = os.environ if env is None else env
    return env.get(ENV_ALLOW_LOCAL_PATHS, "").strip() == "1"


def allowed_output_repos(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The repos a run of this Space may push to: ``OUTPUT_REPO``, ``SPACETRAIN_OUTPUT_REPOS``."""
    env = os.environ if env is None else env
    names = [env.get(PARAMS["output_repo"].variable or "", "")]
    names += env.get(ENV_OUTPUT_REPOS, "").split(",")
    return tuple(dict.fromkeys(n.strip() for n in names if n.strip()))


def check_served(params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """The Space serves only what it was set up for (checked params, Space variables merged).

    An anonymous caller must not push to a repo the Space's token can write (the
    production adapter) nor make the Space read its own disk (``/proc/self/environ``):
    ``output_repo`` must be one the Space's configuration names, and ``base_model`` and
    ``dataset`` Hub ids unless ``SPACETRAIN_ALLOW_LOCAL_PATHS=1``.

    Raises:
        ParamError: one line naming the parameter and the Space variable that decides.
    """
    env = os.environ if env is None else env
    if not local_paths_allowed(env):
        for name in ("base_model", "dataset"):
            ref = params.get(name)
            if ref and not is_hub_id(str(ref)):
                raise ParamError(
                    f"{name} {str(ref)[:80]!r} is not a Hub id (owner/name); this Space reads "
                    f"local paths only with the Space variable {ENV_ALLOW_LOCAL_PATHS}=1"
                )
    repo = params.get("output_repo")
    if repo and params.get("push", True):
        allowed = allowed_output_repos(env)
        if repo not in allowed:
            named = ", ".join(allowed) if allowed else "none"
            raise ParamError(
                f"output_repo {repo!r} is not a repo this Space pushes to (configured: {named}); "
                f"set the Space variable OUTPUT_REPO or {ENV_OUTPUT_REPOS}"
            )


def check_trigger(given: Any, env: Mapping[str, str] | None = None) -> None:
    """With the ``SPACETRAIN_TRIGGER`` secret set, a state-changing call must carry it.

    A public Space's API answers anyone; the trigger is what tells the pipeline from
    them. Compared in constant time; neither value is ever printed.

    Raises:
        ParamError: the trigger is missing or wrong (the message never shows it).
    """
    env = os.environ if env is None else env
    expected = env.get(ENV_TRIGGER, "")
    if not expected:
        return
    offered = given if isinstance(given, str) else ""
    if not hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8")):
        raise ParamError(
            f"this Space needs its trigger: set {ENV_TRIGGER} where the pipeline runs to the "
            f"value `spacetrain space setup` gave the Space ({'wrong' if offered else 'missing'})"
        )


# ------------------------------------------------------------------ 2. errors, signals and output


class BadInput(Exception):
    """Something the user can fix: exit 2."""

    exit_code = EXIT_USAGE


class HubDown(Exception):
    """The Hub kept failing until the retry deadline: exit 3."""

    exit_code = EXIT_INFRA


class TrainFailed(Exception):
    """Training ran and failed: exit 1."""

    exit_code = EXIT_FAILED


class Cancelled(BaseException):
    """The run was stopped on request (SIGTERM, sent by app.py's ``stop_training``): exit 1,
    recorded as ``cancelled``. A BaseException, as KeyboardInterrupt is, so that no
    library's ``except Exception`` swallows it mid-step."""

    exit_code = EXIT_FAILED


def stop_on_sigterm() -> None:
    """SIGTERM ends the run through :func:`main`'s error path: an ``error`` event with
    state ``cancelled`` is the log's last line (Python's default would die silently)."""

    def stop(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop; the clean-up must finish
        raise Cancelled(f"cancelled: the run was stopped on request (signal {signum})")

    if threading.current_thread() is threading.main_thread():  # signals go there only
        signal.signal(signal.SIGTERM, stop)


class PreflightFailed(Exception):
    """A self-check failed before anything was loaded; ``exit_code`` is the worst one."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class World:
    """This process among the processes of one run (torchrun's ``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``; one process without a launcher). Rank 0 alone logs, writes
    ``run.json`` and pushes; the others train their share of the data in silence."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


WORLD = World()  # this process's, set by run() from the launcher's environment


def read_world(env: Mapping[str, str] | None = None) -> World:
    """The :class:`World` a launcher (torchrun, ``accelerate launch``) put this process in.

    A launcher that set up a rendezvous (``MASTER_ADDR``) and then started this process
    alone, as ``accelerate launch --cpu --num_processes 2`` does, is refused: the run
    would silently train on one process.

    Raises:
        BadInput: the launcher's variables are inconsistent; one line says what to run.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        if env.get("MASTER_ADDR"):
            raise BadInput(
                "MASTER_ADDR is set but WORLD_SIZE is not: a launcher asked for several "
                "processes and started only this one (`accelerate launch --cpu "
                "--num_processes N` does); on the CPU run `torchrun --nproc_per_node N "
                "train.py ...`, on GPUs `accelerate launch --multi_gpu` or torchrun"
            )
        return World()
    try:
        size, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise BadInput(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun)"
        ) from None
    if size < 1 or not 0 <= rank < size or not 0 <= local <= rank:
        raise BadInput(f"RANK {rank} / LOCAL_RANK {local} do not fit WORLD_SIZE {size}")
    return World(rank, local, size)


MAX_POINTS = 2000  # loss points a summary keeps (every other one dropped beyond)


@dataclass
class EventSummary:
    """What a run's ``@@spacetrain`` lines said so far, read one line at a time: the one
    reader of :func:`emit`'s events (app.py's run folders, the CLI's job logs)."""

    last_step: dict[str, Any] | None = None
    total: int | None = None
    pushed: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    points: list[tuple[int, float]] = field(default_factory=list)

    def feed(self, line: str) -> None:
        if not line.startswith(EVENT_PREFIX):
            return
        try:
            event = json.loads(line[len(EVENT_PREFIX) :])
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        name = event.get("event")
        if name == "step":
            self.last_step = event
            step, loss = event.get("step"), event.get("loss")
            if (
                isinstance(step, int)
                and isinstance(loss, int | float)
                and not isinstance(loss, bool)
            ):
                self.points.append((step, float(loss)))
                if len(self.points) > MAX_POINTS:  # a long run: half the resolution, same shape
                    self.points = self.points[::2]
        elif name == "train_begin":
            self.total = event.get("total")
        elif name == "pushed":
            self.pushed = event
        elif name == "done":
            self.done = event
        elif name == "error" and (self.error is None or self.error.get("state") == "cancelled"):
            # Under torchrun a rank that fails says so first; the launcher then stops the
            # others, and rank 0's "cancelled" must not hide the failure that caused it.
            self.error = event
        elif name in ("plan", "model", "dataset", "start"):
            self.extra[name] = event


def emit(event: str, human: str | None = None, *, every_rank: bool = False, **fields: Any) -> None:
    """Print one human line (optional) and one ``@@spacetrain`` JSON line, flushed.

    Rank 0 speaks for the run; another rank prints only what ``every_rank`` marks (its
    error), so a run under torchrun has one set of lines.
    """
    if not (WORLD.main or every_rank):
        return
    if human is not None:
        print(f"[train] {human}", flush=True)
    print(EVENT_PREFIX + json.dumps({"event": event, **fields}, default=str), flush=True)


def _quiet_env() -> None:
    """Progress bars would flood the log the Space tails; our step lines replace them.

    Environment switches only, so a bad dataset line still fails before heavy imports.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Renamed-argument notices (transformers 5 -> 6) are for this file's maintainers,
    # not for the person watching a training log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not WORLD.main:  # rank 0 says it once; errors still surface (print, not logging)
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)


def _quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


# ------------------------------------------------------------------ 3. arguments


def _flag_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` that applies the contract's check to the flag's text."""

    def parse(text: str) -> Any:
        try:
            return check_param(name, text, text=True, source="the value")
        except ParamError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("the value ")) from None

    parse.__name__ = name
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The flags, generated from :data:`PARAMS` (``push`` is ``--no-push``)."""
    p = argparse.ArgumentParser(
        prog="train.py", description="Train a QLoRA adapter and push it to the Hub."
    )
    p.add_argument("--output-dir", required=True, type=Path, help="where the adapter is written")
    push = p.add_mutually_exclusive_group(required=True)
    for name, spec in PARAMS.items():
        if spec.flag is None:
            continue
        target = push if name == "output_repo" else p
        if spec.type is bool:
            target.add_argument(spec.flag, action="store_true", help=spec.help or None)
            continue
        target.add_argument(
            spec.flag,
            type=_flag_type(name),
            default=spec.default,
            required=name in ("base_model", "dataset"),
            help=(
                f"{spec.help + '; ' if spec.help else ''}{spec.describe()}"
                + (f" (default {spec.default})" if spec.default is not None else "")
            ).replace("%", "%%"),
        )
    push.add_argument("--no-push", action="store_true", help="keep the adapter local")
    p.add_argument(
        "--params-file",
        type=Path,
        help="instead of the flags above (with --output-dir only): a JSON object of the "
        "parameters, checked with the Space's rules (how the Space's app runs this script)",
    )
    return p


def read_params(
    text: str, where: str, *, trigger_env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A params JSON object checked against the contract: ``{name: value}``, coerced.

    The one reader of params as text, for ``--params-file`` here and ``start_training``
    in app.py: at most :data:`MAX_PARAMS` bytes, an object, known names only. The
    ``trigger`` key is dropped, never kept; with ``trigger_env`` it is checked first
    (:func:`check_trigger`), so a caller without it learns nothing about its params.

    Raises:
        ParamError: one line naming ``where`` and what is wrong.
    """
    try:
        given = json_object(text, where)
    except ParamError:
        if trigger_env is not None:
            check_trigger(None, trigger_env)
        raise
    trigger = given.pop(TRIGGER_KEY, None)
    if trigger_env is not None:
        check_trigger(trigger, trigger_env)
    secret = sorted(str(k) for k in given if "token" in str(k).lower())
    if secret:
        raise ParamError(
            f"{secret[0][:64]}: tokens are never passed in params; set the HF_TOKEN secret"
        )
    unknown = sorted(str(k)[:64] for k in set(given) - set(PARAMS))
    if unknown:
        raise ParamError(
            f"unknown parameter(s) {', '.join(unknown[:5])}; known: {', '.join(PARAMS)}"
        )
    return {
        name: check_param(name, value, text=True, source=f"{where}.{name}")
        for name, value in given.items()
        if value is not None
    }


def json_object(text: str, where: str) -> dict[str, Any]:
    """``text`` as a JSON object of at most :data:`MAX_PARAMS` bytes (else ParamError).

    The one reader of a JSON object from outside: ``--params-file``, and app.py's
    ``start_training`` params, its run requests and the form's Advanced JSON.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_PARAMS:
        raise ParamError(f"{where} is {len(text)} characters long; at most {MAX_PARAMS} bytes")
    try:
        given = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ParamError(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ParamError(f"{where} is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ParamError(f"{where} is not usable JSON: {str(exc)[:120]}") from None
    if not isinstance(given, dict):
        raise ParamError(f"{where} must be a JSON object, got {type(given).__name__}")
    return given


def args_from_params_file(path: Path, output_dir: Path) -> argparse.Namespace:
    """The arguments of a run the Space's supervisor started (``--params-file``).

    The parameters travel in a file, not on the command line (a long value would not fit
    in argv), and are checked again with the same table and, as in a Space, the same
    rules of what it serves (:func:`check_served`). Flags' defaults fill the rest.

    Raises:
        BadInput: unreadable file, a parameter outside the contract or the Space's rules.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the params file ({exc})") from None
    try:
        params = read_params(text, str(path))
        check_served(params)
    except ParamError as exc:
        raise BadInput(str(exc)) from None
    values: dict[str, Any] = {name: p.default for name, p in PARAMS.items()}
    values.update(params)
    for name in ("base_model", "dataset"):
        if not values.get(name):
            raise BadInput(f"{path}: no {name}")
    push = values.pop("push")
    if push and not values.get("output_repo"):
        raise BadInput(f'{path}: no output_repo (or "push": false)')
    if not push:
        values["output_repo"] = None
    return argparse.Namespace(
        **values,
        output_dir=output_dir,
        no_push=not push,
        params_file=path,
        local_paths=local_paths_allowed(),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags (a person's run: local paths welcome), or ``--params-file FILE
    --output-dir DIR`` (the Space's run: the Space's rules, see :func:`check_served`)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--params-file", type=Path)
    pre.add_argument("--output-dir", type=Path)
    known, rest = pre.parse_known_args(argv)
    if known.params_file is None:
        args = build_parser().parse_args(argv)
        args.local_paths = True
        return args
    if rest or known.output_dir is None:
        build_parser().error(
            "--params-file takes --output-dir and nothing else"
            + (f" (got {' '.join(rest)[:80]})" if rest else "")
        )
    return args_from_params_file(known.params_file, known.output_dir)


def default_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"run-{stamp}-{os.urandom(3).hex()}"


# ------------------------------------------------------------------ 4. Hub calls


T = TypeVar("T")


# The retry policy of spacetrain.hub.RetryPolicy, copied because space/ is standalone
# (tests/test_hub.py keeps the two equal): exponential backoff with full jitter, a
# server's Retry-After honoured, the same statuses retried, a deadline.
HUB_RETRY_DEADLINE = 120.0  # seconds; SPACETRAIN_HUB_DEADLINE overrides it
HUB_RETRY_BASE = 0.5
HUB_RETRY_CAP = 15.0
HUB_RETRY_AFTER_CAP = 60.0
HUB_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _hub_deadline_s() -> float:
    """``SPACETRAIN_HUB_DEADLINE`` seconds (as the spacetrain CLI reads it), default 120."""
    try:
        return max(0.0, float(os.environ.get(ENV_HUB_DEADLINE, str(HUB_RETRY_DEADLINE))))
    except ValueError:
        return HUB_RETRY_DEADLINE


def _hub_wait(attempt: int, exc: BaseException) -> float:
    """Seconds before retry ``attempt`` (1-based): jittered backoff, or Retry-After."""
    backoff = random.uniform(0, min(HUB_RETRY_CAP, HUB_RETRY_BASE * 2 ** (attempt - 1)))  # noqa: S311
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        later = min(HUB_RETRY_AFTER_CAP, max(0.0, float(headers.get("Retry-After", 0))))
    except (TypeError, ValueError):
        later = 0.0
    return max(backoff, later)


def hub_call(what: str, fn: Callable[[], T], deadline_s: float | None = None) -> T:
    """Call the Hub, retrying 429/5xx/connection errors until the deadline.

    404s become :class:`BadInput` (an unknown model or dataset is the user's to fix),
    401/403 too (a rejected token); what still fails at the deadline is :class:`HubDown`.
    ``deadline_s`` caps ``SPACETRAIN_HUB_DEADLINE``, so that an API answer stays short.
    """
    from httpx2 import HTTPError
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import HFValidationError

    patience = _hub_deadline_s() if deadline_s is None else min(deadline_s, _hub_deadline_s())
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except GatedRepoError as exc:
            raise BadInput(
                f"{what}: gated repo; accept its terms and use a token with access"
            ) from exc
        except RepositoryNotFoundError as exc:
            raise BadInput(f"{what}: no such repo (or no access with this token)") from exc
        except RevisionNotFoundError as exc:
            raise BadInput(f"{what}: no such revision") from exc
        except RemoteEntryNotFoundError as exc:
            raise BadInput(f"{what}: file not found") from exc
        except HFValidationError as exc:
            raise BadInput(f"{what}: {exc}") from exc
        except OfflineModeIsEnabled as exc:
            raise HubDown(f"{what}: HF_HUB_OFFLINE is set") from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise BadInput(f"{what}: the Hub rejected the token (HTTP {status})") from exc
            if status is not None and status < 500 and status not in HUB_RETRY_STATUS:
                raise BadInput(f"{what}: HTTP {status}") from exc
            if status is not None and status not in HUB_RETRY_STATUS:
                raise HubDown(f"{what}: the Hub answered HTTP {status}") from exc
            last, failure = f"HTTP {status}", exc
        except (HTTPError, ConnectionError, TimeoutError) as exc:
            last, failure = type(exc).__name__, exc
        except LocalEntryNotFoundError as exc:  # a download lost the Hub half-way
            last, failure = "connection lost", exc
        delay = _hub_wait(attempt, failure)
        if time.monotonic() + delay > deadline:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
            raise HubDown(f"{what}: Hub unreachable at {endpoint} ({last})")
        print(f"[train] {what}: {last}, retrying in {delay:.1f}s", flush=True)
        time.sleep(delay)


def _is_local(ref: str, local_paths: bool = True) -> bool:
    """A path on this machine, when local paths are allowed at all (never in a Space
    without ``SPACETRAIN_ALLOW_LOCAL_PATHS=1``: there every reference is a Hub id)."""
    return local_paths and Path(ref).expanduser().exists()


def _check_repo_id(ref: str, kind: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(ref)
    except HFValidationError:
        raise BadInput(
            f"{kind} {ref!r} is neither an existing local path nor a Hub id (owner/name)"
        ) from None


# ------------------------------------------------------------------ 5. the self-check


WRITE_ROLES = ("write", "admin")


def token_role(whoami: dict[str, Any] | None) -> str | None:
    """The token's role in a whoami answer: read, write, admin or fineGrained (None: unsaid)."""
    auth = (whoami or {}).get("auth") or {}
    role = (auth.get("accessToken") or {}).get("role")
    return str(role) if role else None


def write_access(whoami: dict[str, Any], repo_type: str, repo_id: str) -> tuple[bool | None, str]:
    """May the token behind ``whoami`` write ``repo_id`` (or create it in its namespace)?

    Pure and stdlib-only, so the CLI's preflight and the Space's self-check read the
    Hub's answer alike. ``(True|False, reason)``, or ``(None, reason)`` when a
    fine-grained token lists no scope for the repo (only the push will tell). The reason
    reads after the repo: "the fine-grained token may not write to it".
    """
    namespace = repo_id.split("/", 1)[0]
    orgs = [o for o in whoami.get("orgs") or [] if isinstance(o, dict) and o.get("name")]
    names = ({str(whoami.get("name", ""))} | {str(o["name"]) for o in orgs}) - {""}
    if namespace not in names:
        account = ", ".join(sorted(names))
        return False, f"the token's account ({account}) has no namespace {namespace!r}"
    if any(o["name"] == namespace and o.get("roleInOrg") == "read" for o in orgs):
        return False, f"the account has only the read role in {namespace}"
    role = token_role(whoami)
    if role == "fineGrained":
        auth = whoami.get("auth") or {}
        grained = (auth.get("accessToken") or {}).get("fineGrained") or {}
        covering = [
            scope.get("permissions") or []
            for scope in grained.get("scoped") or []
            if ((scope.get("entity") or {}).get("name"), (scope.get("entity") or {}).get("type"))
            in ((repo_id, repo_type), (namespace, "user"), (namespace, "org"))
        ]
        if not covering:
            return None, "the fine-grained token's write access is not listed"
        # Any scope granting write is enough: the Hub promises no order of the scopes.
        if not any("repo.write" in permissions for permissions in covering):
            return False, "the fine-grained token may not write to it"
    elif role is not None and role not in WRITE_ROLES:
        return False, f"the token is a {role!r} token"
    return True, f"{namespace} is writable with this token"


def _token_fix(repo: str | None) -> str:
    """What to do about the Space's token: it comes from SPACE_HF_TOKEN through set-up."""
    which = f"a fine-grained token that can write {repo}" if repo else "a valid token"
    return f"set {ENV_SPACE_TOKEN} ({which}) where the pipeline runs, then `spacetrain space setup`"


def _check(name: str, ok: bool, detail: str, exit_code: int = EXIT_USAGE) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail, "exit_code": EXIT_OK if ok else exit_code}


def _failed(name: str, exc: BadInput | HubDown) -> dict[str, Any]:
    return _check(name, False, str(exc), exc.exit_code)


def _driver() -> str | None:
    """The host's NVIDIA driver release (580.95.05), as the container sees it.

    The NVIDIA runtime mounts ``nvidia-smi`` with the ``utility`` capability; the kernel
    module's version file is the fallback. Neither needs torch or a CUDA context.
    """
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            out = []
        if out:
            return out[0]
    try:
        return driver_in_proc(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        return None


def driver_in_proc(text: str) -> str | None:
    """The release in ``/proc/driver/nvidia/version`` (proprietary or open kernel module)."""
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def _cuda_driver_api() -> str | None:
    """The newest CUDA the driver supports ("13.0"), from libcuda's cuDriverGetVersion.

    torch has no public call for it; the NVIDIA runtime mounts libcuda.so.1 into the
    container, and this asks it directly, without making a context.
    """
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def gpu_facts() -> dict[str, Any]:
    """What the GPU stack looks like from inside the container, for people and checks.

    CUDA visible or not, which device, the driver and the CUDA versions on both sides
    (what the driver supports, what torch was built for), and whether bitsandbytes
    loaded its CUDA library and runs a 4-bit NF4 matmul on the device. Never raises:
    each failure is a fact (``error``, ``bnb_error``). Run it in a short-lived process:
    the CUDA context it makes holds GPU memory until the process ends.
    """
    facts: dict[str, Any] = {"cuda_available": False, "driver": _driver()}
    if facts["driver"] is None and _cuda_driver_api() is None:
        # No driver and no libcuda: CUDA cannot work, and torch (seconds to import) could
        # only confirm it. CPU hardware starts its app that much sooner.
        from importlib.metadata import PackageNotFoundError, version

        with contextlib.suppress(PackageNotFoundError):
            facts["torch"] = version("torch")
        facts["error"] = "no NVIDIA driver in this container (no nvidia-smi, no libcuda)"
        return facts
    try:
        import torch
    except ImportError as exc:
        facts["error"] = f"torch does not import ({exc})"
        return facts
    facts.update(torch=torch.__version__, cuda_build=torch.version.cuda)
    try:
        available = torch.cuda.is_available()
    except Exception as exc:  # a broken driver install raises here on some builds
        facts["error"] = f"{type(exc).__name__}: {exc}"
        return facts
    if not available:
        return facts
    props = torch.cuda.get_device_properties(0)
    facts.update(
        cuda_available=True,
        devices=torch.cuda.device_count(),
        device=props.name,
        capability=f"sm_{props.major}{props.minor}",
        memory_gib=round(props.total_memory / 2**30, 1),
        bf16=torch.cuda.is_bf16_supported(),
    )
    facts["cuda_driver"] = _cuda_driver_api()
    try:
        import bitsandbytes as bnb
        from bitsandbytes import cextension

        facts["bitsandbytes"] = bnb.__version__
        native = getattr(cextension.lib, "_lib", None)
        facts["bnb_library"] = Path(getattr(native, "_name", "") or "none").name
        facts["bnb_cuda"] = bool(getattr(cextension.lib, "compiled_with_cuda", False))
        layer = bnb.nn.Linear4bit(
            64, 64, bias=False, compute_dtype=torch.float16, quant_type="nf4"
        ).to("cuda")
        with torch.no_grad():
            out = layer(torch.randn(4, 64, device="cuda", dtype=torch.float16))
        torch.cuda.synchronize()
        if not bool(torch.isfinite(out).all()):
            raise RuntimeError("the result is not finite")
        facts["bnb_4bit_matmul"] = "ok"
    except Exception as exc:  # any failure here means no QLoRA on this GPU
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        facts["bnb_error"] = f"{type(exc).__name__}: {first}"
    return facts


def describe_gpu(facts: Mapping[str, Any]) -> str:
    """One line for logs and the UI: "NVIDIA A10G (sm_86, 22.1 GiB), driver 580.95 ..."."""
    if not facts.get("cuda_available"):
        why = facts.get("error") or (
            f"torch {facts['torch']} is a CPU-only build"
            if facts.get("torch") and not facts.get("cuda_build")
            else "no GPU is visible"
        )
        driver = f", driver {facts['driver']}" if facts.get("driver") else ""
        return f"no CUDA: {why}{driver}"
    parts = [f"{facts['device']} ({facts['capability']}, {facts['memory_gib']} GiB)"]
    driver = facts.get("driver") or "unknown"
    parts.append(f"driver {driver} (CUDA {facts.get('cuda_driver') or '?'})")
    parts.append(f"torch {facts['torch']} (CUDA {facts['cuda_build']})")
    if facts.get("bitsandbytes"):
        parts.append(f"bitsandbytes {facts['bitsandbytes']} {facts.get('bnb_library')}")
    if facts.get("bnb_4bit_matmul") == "ok":
        parts.append("4-bit matmul ok")
    elif facts.get("bnb_error"):
        parts.append(f"4-bit matmul failed ({facts['bnb_error']})")
    return ", ".join(parts)


def check_gpu(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """With ``SPACETRAIN_EXPECT_GPU=1``: CUDA is there and bitsandbytes runs a 4-bit matmul.

    Imports torch only when a GPU is expected, so the check stays free everywhere else.
    The check carries the :func:`gpu_facts` it was decided on (``facts``).
    """
    env = os.environ if env is None else env
    if env.get(ENV_EXPECT_GPU, "").strip() != "1":
        return _check("gpu", True, f"no GPU expected ({ENV_EXPECT_GPU} is not 1)")
    return gpu_verdict(gpu_facts())


def gpu_verdict(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``gpu`` check decided on :func:`gpu_facts` (fresh, or the app's start-up ones)."""
    fix = f"request GPU hardware for the Space, or unset the Space variable {ENV_EXPECT_GPU}"
    facts = dict(facts)
    line = describe_gpu(facts)
    if not facts.get("cuda_available"):
        return {**_check("gpu", False, f"{ENV_EXPECT_GPU}=1 but {line}: {fix}"), "facts": facts}
    if facts.get("bnb_4bit_matmul") != "ok":
        why = facts.get("bnb_error") or "bitsandbytes did not load its CUDA library"
        detail = (
            f"{facts['device']}: bitsandbytes cannot run a 4-bit matmul ({why}); "
            "the image's torch, CUDA and bitsandbytes do not fit this GPU"
        )
        return {**_check("gpu", False, detail), "facts": facts}
    return {**_check("gpu", True, line), "facts": facts}


def _check_model(
    api: Any, ref: str, revision: str | None, deadline: float | None, local_paths: bool
) -> str:
    """The detail of a readable base model (raises BadInput/HubDown otherwise)."""
    if _is_local(ref, local_paths):
        path = Path(ref).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise BadInput(f"{path}: not a model folder (no config.json)")
        return f"{path} is a local model folder"
    _check_repo_id(ref, "base model")
    info = hub_call(f"base model {ref}", lambda: api.model_info(ref, revision=revision), deadline)
    if "config.json" not in {s.rfilename for s in info.siblings or []}:
        raise BadInput(f"base model {ref}: the repo has no config.json")
    return f"base model {ref} at {revision or 'main'} = {str(info.sha)[:12]}"


def _check_dataset(
    api: Any, ref: str, revision: str | None, deadline: float | None, local_paths: bool
) -> str:
    """The detail of a readable dataset (raises BadInput/HubDown otherwise)."""
    if _is_local(ref, local_paths):
        path = Path(ref).expanduser()
        if path.is_dir() and not any(path.rglob("*.jsonl")):
            raise BadInput(f"{path}: no .jsonl files in this folder")
        return f"{path} is a local {'folder' if path.is_dir() else 'file'}"
    _check_repo_id(ref, "dataset")
    info = hub_call(f"dataset {ref}", lambda: api.dataset_info(ref, revision=revision), deadline)
    names = sorted(s.rfilename for s in info.siblings or [])
    data = [n for n in names if n.endswith((".jsonl", ".parquet"))]
    at = f"{revision or 'main'} = {str(info.sha)[:12]}"
    if not data:
        raise BadInput(f"dataset {ref} at {at} has no .jsonl or .parquet file")
    return f"dataset {ref} at {at}: {', '.join(data[:3])}"


def preflight(
    params: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    hub_deadline_s: float | None = None,
    gpu: Callable[[], dict[str, Any]] | None = None,
    local_paths: bool = True,
) -> list[dict[str, Any]]:
    """Everything a run needs that can be known before loading anything, one check each.

    ``params`` as ``start_training`` takes them (``base_model``, ``model_revision``,
    ``dataset``, ``dataset_revision``, ``output_repo``, ``push``). Each check is
    ``{"name", "ok", "detail", "exit_code"}`` (2: configuration to fix, 3: the Hub stays
    unreachable); a check that cannot run after an earlier failure passes as "skipped".
    A missing or rejected token names ``SPACE_HF_TOKEN``, where the Space's secret comes
    from. The token itself is never part of a detail. ``gpu`` replaces :func:`check_gpu`.
    ``local_paths=False`` (a Space's API) reads every reference as a Hub id.
    """
    env = os.environ if env is None else env
    token = env.get(ENV_TOKEN, "").strip()
    repo = params.get("output_repo") if params.get("push", True) else None
    model, data = params.get("base_model") or "", params.get("dataset") or ""
    on_hub = bool(repo) or any(ref and not _is_local(ref, local_paths) for ref in (model, data))
    checks: list[dict[str, Any]] = []

    if token:
        checks.append(_check("token", True, f"{ENV_TOKEN} is set (the Space's secret)"))
    elif repo:
        checks.append(
            _check(
                "token",
                False,
                f"the Space has no {ENV_TOKEN} secret, so it cannot push to {repo}: "
                + _token_fix(repo),
            )
        )
    else:
        checks.append(_check("token", True, f"no {ENV_TOKEN}: nothing to push, public repos only"))

    api: Any = None
    if on_hub:
        from huggingface_hub import HfApi

        api = HfApi(token=token or False)
    who: dict[str, Any] | None = None
    down = False
    if not token:
        checks.append(_check("whoami", True, f"skipped: no {ENV_TOKEN}"))
    elif not on_hub:
        checks.append(_check("whoami", True, "skipped: nothing on the Hub"))
    else:
        try:
            who = hub_call("check the token", api.whoami, hub_deadline_s)
        except BadInput as exc:
            reason = str(exc).split(": ", 1)[-1]
            checks.append(
                _check(
                    "whoami",
                    False,
                    f"{reason}: the Space's {ENV_TOKEN} secret is not a usable token; "
                    + _token_fix(repo),
                )
            )
        except HubDown as exc:
            checks.append(_failed("whoami", exc))
            down = True
        else:
            user, role = who.get("name", "?"), token_role(who) or "unknown"
            checks.append(
                _check("whoami", True, f"{ENV_TOKEN} accepted: user {user} (role {role})")
            )

    if not repo:
        checks.append(_check("output-repo", True, "not pushing"))
    elif down:
        checks.append(_check("output-repo", True, "skipped: the Hub is unreachable"))
    elif who is None:
        checks.append(_check("output-repo", True, "skipped: needs an accepted token"))
    else:
        try:
            _check_repo_id(repo, "output repo")
            exists = hub_call(f"output repo {repo}", lambda: api.repo_exists(repo), hub_deadline_s)
            state = "exists" if exists else "does not exist yet (it will be created)"
            can, why = write_access(who, "model", repo)
            if can is False:
                checks.append(
                    _check(
                        "output-repo",
                        False,
                        f"output repo {repo} {state}, but {why}: give {ENV_SPACE_TOKEN} write "
                        "access to it, then `spacetrain space setup`",
                    )
                )
            else:
                checks.append(_check("output-repo", True, f"output repo {repo} {state}; {why}"))
        except (BadInput, HubDown) as exc:
            checks.append(_failed("output-repo", exc))
            down = isinstance(exc, HubDown)

    for name, ref, revision, probe in (
        ("dataset", data, params.get("dataset_revision"), _check_dataset),
        ("base-model", model, params.get("model_revision"), _check_model),
    ):
        if not ref:
            checks.append(_check(name, False, f"no {name.replace('-', ' ')} given"))
        elif down and not _is_local(ref, local_paths):
            checks.append(_check(name, True, "skipped: the Hub is unreachable"))
        else:
            try:
                detail = probe(api, ref, revision, hub_deadline_s, local_paths)
                checks.append(_check(name, True, detail))
            except (BadInput, HubDown) as exc:
                checks.append(_failed(name, exc))
                down = isinstance(exc, HubDown)

    checks.append((gpu or (lambda: check_gpu(env)))())
    return checks


def preflight_summary(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"ok", "exit_code", "checks", "error"}``: the worst code, the first failure's line."""
    failed = [c for c in checks if not c["ok"]]
    return {
        "ok": not failed,
        "exit_code": max((c["exit_code"] for c in failed), default=EXIT_OK),
        "checks": checks,
        "error": failed[0]["detail"] if failed else None,
    }


def self_check(args: argparse.Namespace) -> None:
    """The Space's self-check (:func:`preflight`), before any data or model is loaded.

    An hour of GPU time must not end on a missing token or an unreadable repo: one line
    per check, one ``preflight`` event, and the first failure stops the run.
    """
    params = {
        "base_model": args.base_model,
        "model_revision": args.model_revision,
        "dataset": args.dataset,
        "dataset_revision": args.dataset_revision,
        "output_repo": args.output_repo,
        "push": args.output_repo is not None,
    }
    summary = preflight_summary(preflight(params, local_paths=args.local_paths))
    for check in summary["checks"] if WORLD.main else ():
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"[train] self-check {mark} {check['name']}: {check['detail']}", flush=True)
    emit("preflight", None, **summary)
    if not summary["ok"]:
        raise PreflightFailed(summary["error"], summary["exit_code"])


# ------------------------------------------------------------------ 6. data


@dataclass
class DatasetRows:
    """Validated examples, all in one format, plus where they came from."""

    ref: str
    revision: str | None
    files: list[str]
    fmt: str  # "messages" | "prompt_completion"
    rows: list[dict[str, Any]] = field(default_factory=list)


def _check_messages(value: Any, where: str, key: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: '{key}' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise BadInput(f"{where}: {key}[{i}] is not an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise BadInput(f"{where}: {key}[{i}] has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise BadInput(f"{where}: {key}[{i}] has no 'content' string")
        out.append({"role": role, "content": content})
    return out


def validate_example(obj: Any, where: str) -> tuple[str, dict[str, Any]]:
    """Return (format, normalised row) or raise :class:`BadInput` naming ``where``."""
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        messages = _check_messages(obj["messages"], where, "messages")
        if not any(m["role"] == "assistant" and m["content"] for m in messages):
            raise BadInput(f"{where}: 'messages' has no non-empty assistant turn to learn from")
        return "messages", {"messages": messages}
    if "prompt" in obj and "completion" in obj:
        prompt, completion = obj["prompt"], obj["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            if not completion:
                raise BadInput(f"{where}: 'completion' is empty")
            return "prompt_completion", {"prompt": prompt, "completion": completion}
        return "prompt_completion", {
            "prompt": _check_messages(prompt, where, "prompt"),
            "completion": _check_messages(completion, where, "completion"),
        }
    keys = ", ".join(sorted(map(str, obj))) or "none"
    raise BadInput(
        f"{where}: missing fields: need 'messages' or 'prompt'+'completion' (has {keys})"
    )


def read_jsonl(lines: Iterable[str], label: str, into: DatasetRows) -> None:
    """Validate JSONL text; errors name ``label`` and the 1-based line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{label}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        fmt, row = validate_example(obj, where)
        if into.rows and fmt != into.fmt:
            raise BadInput(f"{where}: this line is {fmt} but earlier lines are {into.fmt}")
        into.fmt = fmt
        into.rows.append(row)
        # Conversational prompt/completion rows must agree too, or Arrow cannot hold them.
        if fmt == "prompt_completion" and len(into.rows) > 1:
            first, this = into.rows[0], row
            if isinstance(first["prompt"], str) != isinstance(this["prompt"], str):
                raise BadInput(f"{where}: mixes plain-text and chat prompt/completion rows")


def _read_file(path: Path, label: str, into: DatasetRows) -> None:
    try:
        with path.open(encoding="utf-8") as handle:
            read_jsonl(handle, label, into)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{label}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise BadInput(f"{label}: cannot read ({exc.strerror})") from None


def load_rows(ref: str, revision: str | None, *, local_paths: bool = True) -> DatasetRows:
    """Read a local JSONL file (or folder of them) or a Hub dataset at ``revision``."""
    if _is_local(ref, local_paths):
        path = Path(ref).expanduser()
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        if not files:
            raise BadInput(f"{path}: no .jsonl files in this folder")
        data = DatasetRows(ref, None, [str(f) for f in files], "messages")
        for f in files:
            _read_file(f, str(f), data)
    else:
        data = _load_hub_rows(ref, revision)
    if not data.rows:
        raise BadInput(f"{ref}: no examples (the file is empty)")
    return data


def _load_hub_rows(ref: str, revision: str | None) -> DatasetRows:
    _check_repo_id(ref, "dataset")
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    info = hub_call(f"dataset {ref}", lambda: api.dataset_info(ref, revision=revision))
    names = sorted(s.rfilename for s in info.siblings or [])
    jsonl = [n for n in names if n.endswith(".jsonl")]
    train = [n for n in jsonl if "train" in Path(n).name]
    chosen = train or jsonl
    data = DatasetRows(ref, info.sha, chosen, "messages")
    emit("download", f"downloading {ref}@{info.sha}", what="dataset", repo=ref, revision=info.sha)
    if chosen:
        for name in chosen:
            local = hub_call(
                f"dataset {ref}",
                lambda name=name: hf_hub_download(
                    ref, name, repo_type="dataset", revision=info.sha
                ),
            )
            _read_file(Path(local), f"{ref}@{info.sha[:12]}/{name}", data)
        return data
    # No JSONL (e.g. parquet written by `datasets.push_to_hub`): let `datasets` read it.
    import datasets

    try:
        table = hub_call(
            f"dataset {ref}",
            lambda: datasets.load_dataset(ref, revision=info.sha, split="train"),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise BadInput(f"dataset {ref}: cannot read a train split ({exc})") from None
    data.files = ["<datasets train split>"]
    for index, obj in enumerate(table):
        fmt, row = validate_example(dict(obj), f"{ref}@{info.sha[:12]} row {index}")
        if data.rows and fmt != data.fmt:
            raise BadInput(f"{ref} row {index}: this row is {fmt} but earlier rows are {data.fmt}")
        data.fmt = fmt
        data.rows.append(row)
    return data


def to_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Split a chat at its last assistant turn: loss on that turn only.

    The fallback when the chat template cannot mark assistant turns: earlier turns
    become context, and TRL's completion-only loss trains on the final answer.
    """
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]]}


def load_data(args: argparse.Namespace) -> DatasetRows:
    """Step 1: the dataset, read and checked line by line before any model loads."""
    data = load_rows(args.dataset, args.dataset_revision, local_paths=args.local_paths)
    emit(
        "dataset",
        f"dataset {args.dataset}: {len(data.rows)} examples ({data.fmt})",
        examples=len(data.rows),
        format=data.fmt,
        revision=data.revision,
    )
    return data


# ------------------------------------------------------------------ 7. model


# Files a causal LM needs; anything else in a model repo (other weight formats,
# ONNX/GGUF exports, images) is skipped.
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


@dataclass
class ModelRef:
    """Where the base model came from and the folder it was read from."""

    ref: str
    revision: str | None
    path: Path


def resolve_model(ref: str, revision: str | None, *, local_paths: bool = True) -> ModelRef:
    """A local folder as is; a Hub id downloaded at ``revision`` (recorded as a sha)."""
    if _is_local(ref, local_paths):
        path = Path(ref).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise BadInput(f"{path}: not a model folder (no config.json)")
        return ModelRef(ref, None, path)  # a folder has no revision to pin
    _check_repo_id(ref, "base model")
    from huggingface_hub import HfApi, snapshot_download

    info = hub_call(f"base model {ref}", lambda: HfApi().model_info(ref, revision=revision))
    names = [s.rfilename for s in info.siblings or []]
    if "config.json" not in names:
        raise BadInput(f"base model {ref}: the repo has no config.json")
    patterns = list(MODEL_FILES)
    if not any(n.endswith(".safetensors") for n in names):
        patterns.append("*.bin")
    emit("download", f"downloading {ref}@{info.sha}", what="model", repo=ref, revision=info.sha)
    local = hub_call(
        f"base model {ref}",
        lambda: snapshot_download(ref, revision=info.sha, allow_patterns=patterns),
    )
    return ModelRef(ref, info.sha, Path(local))


def _device(world: World) -> dict[str, Any]:
    """The device this process trains on: under torchrun, the GPU of its local rank."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
        return {
            "type": "cuda",
            "index": world.local_rank,
            "name": torch.cuda.get_device_name(world.local_rank),
            "bf16": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda,
        }
    return {"type": "cpu", "threads": torch.get_num_threads(), "bf16": False}


def quantization(device: dict[str, Any], fsdp: bool) -> dict[str, Any]:
    """BitsAndBytesConfig's arguments: 4-bit NF4, double quantization, and the dtypes.

    Compute in bf16 on GPUs that have it (fp16 on the others, fp32 on the CPU). The
    4-bit weights are stored packed in uint8, except under FSDP: FSDP-QLoRA shards
    parameters of one float dtype, so the storage dtype must be the compute dtype.
    """
    import torch

    on_gpu = device["type"] == "cuda"
    compute = torch.bfloat16 if on_gpu and device["bf16"] else torch.float32
    if on_gpu and not device["bf16"]:
        compute = torch.float16
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": compute,
        "bnb_4bit_quant_storage": compute if fsdp else torch.uint8,
    }


def load_base(
    model: ModelRef, device: dict[str, Any], *, fsdp: bool = False
) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenizer and the base model in 4-bit NF4 with double quantization."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    on_gpu = device["type"] == "cuda"
    settings = quantization(device, fsdp)
    compute = settings["bnb_4bit_compute_dtype"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(model.path)
        base = AutoModelForCausalLM.from_pretrained(
            model.path,
            quantization_config=BitsAndBytesConfig(**settings),
            dtype=compute,
            # DDP: the whole 4-bit base on this rank's GPU; FSDP places it itself.
            device_map={"": device["index"]} if on_gpu and not fsdp else None,
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"base model {model.ref}: cannot load it ({first})") from None
    import bitsandbytes as bnb_lib

    n4 = sum(isinstance(m, bnb_lib.nn.Linear4bit) for m in base.modules())
    plain = [
        n
        for n, m in base.named_modules()
        if isinstance(m, torch.nn.Linear) and not isinstance(m, bnb_lib.nn.Linear4bit)
    ]
    if n4 == 0:
        raise TrainFailed("bitsandbytes quantized no Linear layer to 4-bit")
    quant = {
        "method": "bitsandbytes",
        "load_in_4bit": True,
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": str(compute).removeprefix("torch."),
        "storage_dtype": str(settings["bnb_4bit_quant_storage"]).removeprefix("torch."),
        "linear4bit_modules": n4,
        "unquantized_linear_modules": plain,
    }
    return tokenizer, base, quant


@dataclass
class Base:
    """The loaded base model: where it came from, the device it is on, its tokenizer,
    the 4-bit model itself and the quantization facts ``run.json`` records."""

    ref: ModelRef
    device: dict[str, Any]
    tokenizer: Any
    model: Any
    quant: dict[str, Any]
    attention: str  # the attention implementation in use ("sdpa", "flash_attention_2", ...)
    distributed: str | None  # "ddp" or "fsdp" under a launcher with several processes


def _fsdp_loading(device: dict[str, Any]) -> None:
    """FSDP-QLoRA's loading: the processes join before the model loads, and transformers
    reads the checkpoint on rank 0 alone (``FSDP_QLORA``'s ``cpu_ram_efficient_loading``)
    so a base bigger than one GPU never sits whole on any of them."""
    import torch.distributed as dist

    os.environ["ACCELERATE_USE_FSDP"] = "true"
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device["type"] == "cuda" else "gloo")


def load_model(args: argparse.Namespace) -> Base:
    """Step 2: the base model, downloaded at its revision and loaded in 4-bit NF4.

    Under torchrun each process loads its own copy on the GPU of its local rank (DDP),
    or, with ``--distributed fsdp``, the 4-bit layout FSDP can shard.
    """
    model_ref = resolve_model(args.base_model, args.model_revision, local_paths=args.local_paths)
    _quiet_libraries()
    from transformers import set_seed

    set_seed(args.seed)
    device = _device(WORLD)
    distributed = args.distributed if WORLD.size > 1 else None
    if distributed == "fsdp":
        _fsdp_loading(device)
    tokenizer, model, quant = load_base(model_ref, device, fsdp=distributed == "fsdp")
    attention = str(getattr(model.config, "_attn_implementation", None) or "eager")
    where = device["type"] + (f" x{WORLD.size} ({distributed})" if distributed else "")
    emit(
        "model",
        f"base {args.base_model}: {quant['linear4bit_modules']} Linear4bit layers (nf4, "
        f"double quant, compute {quant['compute_dtype']}) on {where}, attention {attention}",
        quantization=quant,
        device=device,
        attention=attention,
        world_size=WORLD.size,
    )
    return Base(model_ref, device, tokenizer, model, quant, attention, distributed)


# ------------------------------------------------------------------ 8. loss mode and packing


def choose_loss_mode(tokenizer: Any, fmt: str) -> tuple[str, str]:
    """Pick ``assistant_only`` or ``completion_only``, and say why.

    Assistant-only loss needs a template with ``{% generation %}`` markers (TRL 1.16
    patches known families) that also puts the end-of-turn token inside the mask, or
    the model never learns to stop. Otherwise chats are split into prompt/completion.
    """
    if fmt == "prompt_completion":
        return "completion_only", "the dataset is prompt/completion"
    if not getattr(tokenizer, "chat_template", None):
        raise BadInput(
            "the base model's tokenizer has no chat template: use a chat/instruct model, "
            "or a prompt/completion dataset with plain strings"
        )
    from trl.chat_template_utils import (
        get_training_chat_template,
        is_chat_template_stop_token_trained,
    )

    try:
        template = get_training_chat_template(tokenizer)
    except (ValueError, TypeError) as exc:
        return "completion_only", f"the chat template has no generation markers ({exc})"
    if not is_chat_template_stop_token_trained(tokenizer, chat_template=template):
        return "completion_only", "the template leaves the end-of-turn token out of the mask"
    how = "patched by TRL" if template else "native"
    return "assistant_only", f"the chat template marks assistant turns ({how})"


def example_lengths(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> list[int]:
    """Token count of each example as TRL will see it (truncated to ``max_length``)."""
    lengths = []
    for row in rows:
        if "messages" in row:
            ids = tokenizer.apply_chat_template(row["messages"], tokenize=True)
        elif isinstance(row["prompt"], list):
            ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
        else:
            ids = tokenizer(row["prompt"] + row["completion"])["input_ids"]
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        lengths.append(min(len(ids), max_length))
    return lengths


@dataclass
class PackingPlan:
    packing: bool
    reason: str
    padded_tokens: int
    real_tokens: int
    attention: str = "eager"


def varlen_attention(attention: str, on_gpu: bool) -> bool:
    """A kernel that runs packed rows as separate variable-length sequences: flash
    attention (transformers' ``flash_attention_2``/``_3``, or a Hub kernel of it), on a GPU.

    Any other kernel (sdpa, eager) runs a packed row as one dense sequence with a
    block-diagonal mask: correct, but it spends the attention work packing was to save.
    """
    return on_gpu and "flash" in attention.lower()


def plan_packing(
    mode: str,
    lengths: list[int],
    *,
    batch_size: int,
    grad_accum: int,
    max_length: int,
    seed: int,
    attention: str = "eager",
    on_gpu: bool = False,
) -> PackingPlan:
    """``auto``: pack only with a varlen attention kernel (:func:`varlen_attention`), when
    padding would waste >20% of the work and packing leaves >=8 steps an epoch.

    Packing fills rows up to ``max_length``, so it also cuts the optimizer steps per epoch;
    on a tiny dataset that starves the schedule, hence the last condition.
    """
    real = sum(lengths)
    order = list(lengths)
    random.Random(seed).shuffle(order)  # noqa: S311 - a simulation, not a secret
    padded = sum(
        len(chunk) * max(chunk)
        for chunk in (order[i : i + batch_size] for i in range(0, len(order), batch_size))
    )
    if mode in ("on", "off"):
        return PackingPlan(mode == "on", f"--packing {mode}", padded, real, attention)
    if not varlen_attention(attention, on_gpu):
        where = "" if on_gpu else " on the CPU"
        reason = (
            f"attention {attention}{where} has no varlen kernel, so packed rows would not "
            "save attention work (packing needs flash attention on a GPU)"
        )
        return PackingPlan(False, reason, padded, real, attention)
    waste = 1 - real / padded if padded else 0.0
    packed_rows = max(1, math.ceil(real / max_length))
    packed_steps = math.ceil(math.ceil(packed_rows / batch_size) / grad_accum)
    if waste <= 0.20:
        return PackingPlan(False, f"padding wastes only {waste:.0%}", padded, real, attention)
    if packed_steps < 8:
        reason = f"padding wastes {waste:.0%} but packing leaves {packed_steps} step(s) an epoch"
        return PackingPlan(False, reason, padded, real, attention)
    reason = f"attention {attention} is varlen and padding would waste {waste:.0%}"
    return PackingPlan(True, reason, padded, real, attention)


@dataclass
class TrainingPlan:
    """What the trainer is given: the rows (chats split when the loss needs it), the loss
    mode and the packing decision, each with the reason ``run.json`` records."""

    rows: list[dict[str, Any]]
    loss_mode: str
    loss_reason: str
    packing: PackingPlan


def plan_training(args: argparse.Namespace, base: Base, data: DatasetRows) -> TrainingPlan:
    """Step 3: which tokens carry the loss, and whether rows are packed; one ``plan`` event."""
    loss_mode, loss_reason = choose_loss_mode(base.tokenizer, data.fmt)
    rows = data.rows
    if data.fmt == "messages" and loss_mode == "completion_only":
        rows = [to_prompt_completion(r) for r in rows]
    lengths = example_lengths(base.tokenizer, rows, args.max_length)
    plan = plan_packing(
        args.packing,
        lengths,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        seed=args.seed,
        attention=base.attention,
        on_gpu=base.device["type"] == "cuda",
    )
    emit(
        "plan",
        f"loss on {loss_mode.replace('_', ' ')} tokens ({loss_reason}); "
        f"packing {'on' if plan.packing else 'off'} ({plan.reason})",
        loss_mode=loss_mode,
        packing=plan.packing,
        packing_reason=plan.reason,
        tokens_per_epoch=plan.real_tokens,
    )
    return TrainingPlan(rows, loss_mode, loss_reason, plan)


# ------------------------------------------------------------------ 9. training


def _make_trainer_class() -> type:
    from trl import SFTTrainer

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer that counts processed (padded) vs real tokens per micro-batch."""

        processed_tokens = 0
        real_tokens = 0

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            if model.training:
                ids = inputs["input_ids"]
                self.processed_tokens += int(ids.numel())
                mask = inputs.get("attention_mask")
                self.real_tokens += int(mask.sum()) if mask is not None else int(ids.numel())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return CountingSFTTrainer


def _make_progress_callback(history: list[dict[str, Any]]) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Turns Trainer logs into ``[train] step`` lines and ``step`` events."""

        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.last_t = self.t0
            self.last_tokens = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = self.last_t = time.monotonic()
            emit("train_begin", f"training {state.max_steps} steps", total=state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step >= state.max_steps:
                control.should_log = True  # the last step is always logged: a run ends at N/N

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            now = time.monotonic()
            tokens = int(logs.get("num_tokens", 0))
            rate = (tokens - self.last_tokens) / max(now - self.last_t, 1e-9)
            self.last_t, self.last_tokens = now, tokens
            point = {
                "step": state.global_step,
                "total": state.max_steps,
                "epoch": round(float(logs.get("epoch", state.epoch or 0.0)), 4),
                "loss": round(float(logs["loss"]), 6),
                "lr": float(logs.get("learning_rate", 0.0)),
                "tokens": tokens,
                "tokens_per_s": round(rate, 1),
                "elapsed_s": round(now - self.t0, 2),
            }
            history.append(point)
            emit(
                "step",
                f"step {point['step']}/{point['total']} epoch {point['epoch']:.2f} "
                f"loss {point['loss']:.4f} lr {point['lr']:.1e} tok/s {rate:.0f}",
                **point,
            )

    return Progress()


# FSDP-QLoRA (bitsandbytes' and PEFT's recipe): FSDP1, whole decoder layers per unit, the
# flat parameters of one dtype (hence the 4-bit storage dtype = compute dtype, see
# ``quantization``), the checkpoint read on rank 0 and broadcast to the others.
FSDP_QLORA = {
    "version": 1,
    "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "use_orig_params": False,
    "cpu_ram_efficient_loading": True,
    "sync_module_states": True,
    "state_dict_type": "FULL_STATE_DICT",
}


def distributed_settings(distributed: str | None) -> dict[str, Any]:
    """SFTConfig's arguments for the processes of one run: DDP (every LoRA weight takes
    part in every step, so no search for unused ones) or FSDP-QLoRA; none alone."""
    if distributed == "fsdp":
        return {"fsdp": True, "fsdp_config": dict(FSDP_QLORA)}
    if distributed == "ddp":
        return {"ddp_find_unused_parameters": False}
    return {}


def sft_config(args: argparse.Namespace, plan: TrainingPlan, base: Base) -> Any:
    """TRL's SFTConfig for this run: cosine schedule, no checkpoints, our own logging."""
    from trl import SFTConfig

    device = base.device
    on_gpu = device["type"] == "cuda"
    return SFTConfig(
        output_dir=str(args.output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        warmup_steps=args.warmup_ratio,
        lr_scheduler_type="cosine",
        max_length=args.max_length,
        packing=plan.packing.packing,
        assistant_only_loss=plan.loss_mode == "assistant_only",
        completion_only_loss=True if plan.loss_mode == "completion_only" else None,
        activation_checkpointing=on_gpu,
        bf16=on_gpu and bool(device["bf16"]),
        fp16=on_gpu and not device["bf16"],
        use_cpu=not on_gpu,
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=args.logging_steps or PARAMS["logging_steps"].default,
        logging_first_step=True,  # a first loss point seconds after the start
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **distributed_settings(base.distributed),
    )


def lora_config(args: argparse.Namespace) -> Any:
    """LoRA on every linear layer of the base (the QLoRA paper's choice)."""
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )


def build_trainer(
    args: argparse.Namespace, base: Base, plan: TrainingPlan, history: list[dict[str, Any]]
) -> Any:
    """Step 4: the counting SFTTrainer, reporting through our step events into ``history``."""
    from datasets import Dataset
    from transformers import PrinterCallback

    trainer = _make_trainer_class()(
        model=base.model,
        args=sft_config(args, plan, base),
        train_dataset=Dataset.from_list(plan.rows),
        processing_class=base.tokenizer,
        peft_config=lora_config(args),
        callbacks=[_make_progress_callback(history)],
    )
    trainer.remove_callback(PrinterCallback)  # our step lines say the same, parseably
    if base.device["type"] != "cuda":
        # TRL casts QLoRA adapters to bf16 (the paper's GPU recipe); on the CPU the
        # compute dtype is fp32, and bf16 adapter weights would round small updates away.
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    return trainer


def train(args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    """Everything from loading to the saved adapter, step by step; returns the manifest."""
    started = time.time()
    data = load_data(args)
    base = load_model(args)
    plan = plan_training(args, base, data)
    history: list[dict[str, Any]] = []
    trainer = build_trainer(args, base, plan, history)
    result = trainer.train()
    tokens = world_tokens(trainer)
    save_adapter(trainer, args, base)
    return build_manifest(args, run_id, started, data, base, plan, trainer, result, history, tokens)


def world_tokens(trainer: Any) -> dict[str, int]:
    """Real and processed tokens of the whole run: each process counted its own share,
    and an all-reduce adds them up (every process must call this)."""
    counts = [trainer.real_tokens, trainer.processed_tokens]
    if WORLD.size > 1:
        import torch
        import torch.distributed as dist

        total = torch.tensor(counts, dtype=torch.long, device=trainer.accelerator.device)
        dist.all_reduce(total)
        counts = [int(n) for n in total.tolist()]
    return {"real": counts[0], "processed": counts[1]}


# ------------------------------------------------------------------ 10. saving and pushing


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PACKAGES = (  # the versions run.json records
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "huggingface_hub",
)


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def save_adapter(trainer: Any, args: argparse.Namespace, base: Base) -> None:
    """Step 5: the adapter files in ``--output-dir``, naming the base by its Hub id.

    Rank 0 writes them. Under FSDP every process first takes part in gathering the
    sharded weights; under DDP each holds the same adapter already.
    """
    state = None
    if base.distributed == "fsdp":
        state = trainer.accelerator.get_state_dict(trainer.model)  # a collective: all ranks
    if not WORLD.main:
        return
    args.output_dir.mkdir(parents=True, exist_ok=True)
    adapter_cfg = trainer.model.peft_config["default"]
    # The model was loaded from a download folder: record the id and commit it came
    # from instead, so adapter_config.json works on any machine (AutoPeftModel).
    adapter_cfg.base_model_name_or_path = args.base_model
    adapter_cfg.revision = base.ref.revision
    trainer.model.save_pretrained(str(args.output_dir), state_dict=state)


def build_manifest(
    args: argparse.Namespace,
    run_id: str,
    started: float,
    data: DatasetRows,
    base: Base,
    plan: TrainingPlan,
    trainer: Any,
    result: Any,
    history: list[dict[str, Any]],
    tokens: dict[str, int],
) -> dict[str, Any]:
    """Step 6: ``run.json``, what this run was and did (docs/architecture.md, "train.py")."""
    train_runtime = float(result.metrics.get("train_runtime", 0.0))
    adapter_cfg = trainer.model.peft_config["default"]
    packing = plan.packing
    return {
        "schema_version": 1,
        "run_id": run_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model": {"id": args.base_model, "revision": base.ref.revision},
        "dataset": {
            "id": args.dataset,
            "revision": data.revision,
            "files": data.files,
            "format": data.fmt,
            "examples": len(data.rows),
        },
        "quantization": base.quant,
        "lora": {
            "r": adapter_cfg.r,
            "alpha": adapter_cfg.lora_alpha,
            "dropout": adapter_cfg.lora_dropout,
            "target_modules": sorted({m.rsplit(".", 1)[-1] for m in adapter_cfg.target_modules}),
        },
        "hyperparameters": {
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "grad_accum": args.grad_accum,
            "max_length": args.max_length,
            "warmup_ratio": args.warmup_ratio,
            "lr_scheduler": "cosine",
            "seed": args.seed,
            "gradient_checkpointing": base.device["type"] == "cuda",
        },
        "loss_mode": plan.loss_mode,
        "loss_mode_reason": plan.loss_reason,
        "packing": {
            "enabled": packing.packing,
            "reason": packing.reason,
            "attention": packing.attention,
        },
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss),
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "loss_history": [[h["step"], h["loss"]] for h in history],
        "runtime_s": round(time.time() - started, 2),
        "train_runtime_s": round(train_runtime, 2),
        "tokens": {
            "real": tokens["real"],
            "processed": tokens["processed"],
            "per_epoch": packing.real_tokens,
            "unpacked_padded_per_epoch": packing.padded_tokens,
            "real_per_s": round(tokens["real"] / train_runtime, 1) if train_runtime else None,
        },
        "device": base.device,
        "world_size": WORLD.size,
        "distributed": base.distributed,
        "versions": _versions(),
        "output_repo": args.output_repo,
    }


def write_model_card(out: Path, manifest: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    base, data = manifest["base_model"], manifest["dataset"]
    hub_id = re.compile(r"^[\w.-]+/[\w.-]+$")
    card_data = ModelCardData(
        library_name="peft",
        base_model=base["id"] if hub_id.match(base["id"]) else None,
        datasets=[data["id"]] if hub_id.match(data["id"]) and data["revision"] else None,
        tags=["lora", "qlora", "trl", "sft", "spacetrain"],
    )
    hp = manifest["hyperparameters"]
    lora = manifest["lora"]
    rows = [
        ("run id", manifest["run_id"]),
        ("base model", f"{base['id']} @ {base['revision'] or 'local'}"),
        ("dataset", f"{data['id']} @ {data['revision'] or 'local'} ({data['examples']} examples)"),
        ("quantization", "4-bit NF4, double quantization (bitsandbytes)"),
        ("LoRA", f"r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, all linear"),
        ("epochs", hp["epochs"]),
        ("learning rate", hp["learning_rate"]),
        ("batch size x grad accum", f"{hp['batch_size']} x {hp['grad_accum']}"),
        ("max length", hp["max_length"]),
        ("seed", hp["seed"]),
        ("loss", manifest["loss_mode"].replace("_", " ")),
        ("packing", "on" if manifest["packing"]["enabled"] else "off"),
        ("steps", manifest["steps"]),
        ("train loss (mean)", f"{manifest['train_loss']:.4f}"),
        ("final logged loss", manifest["final_loss"]),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    body = (
        f"# QLoRA adapter — run `{manifest['run_id']}`\n\n"
        "Trained by the spacetrain Space (`train.py`). `run.json` in this commit holds the "
        "full manifest: versions, token counts, loss history.\n\n"
        f"| | |\n|---|---|\n{table}\n"
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    card.save(out / "README.md")


def push(out: Path, repo: str, run_id: str, private: bool) -> tuple[str, str]:
    """Create ``repo`` if needed and commit adapter + run.json + card at once."""
    from huggingface_hub import CommitOperationAdd, HfApi

    _check_repo_id(repo, "output repo")
    api = HfApi()
    hub_call(f"output repo {repo}", lambda: api.create_repo(repo, exist_ok=True, private=private))
    names = [*ADAPTER_FILES, "run.json", "README.md"]
    ops = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(out / n)) for n in names]
    info = hub_call(
        f"output repo {repo}",
        lambda: api.create_commit(
            repo,
            operations=ops,
            commit_message=f"spacetrain run {run_id}: adapter, run.json, model card",
            commit_description=f"run_id: {run_id}",
        ),
    )
    return info.oid, info.commit_url


def publish(args: argparse.Namespace, run_id: str, manifest: dict[str, Any]) -> tuple[Any, Any]:
    """Step 7: ``run.json`` and the model card beside the adapter, then the push (unless
    ``--no-push``). Returns ``(repo, revision)``, both None when nothing was pushed."""
    out: Path = args.output_dir
    (out / "run.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, manifest)
    emit("saved", f"adapter and run.json written to {out}", output_dir=str(out))
    if not args.output_repo:
        return None, None
    repo = args.output_repo
    try:
        revision, url = push(out, repo, run_id, args.private)
    except (BadInput, HubDown) as exc:
        # Hours of training must not vanish with a failed push: say where it is.
        exc.args = (f"{exc} (the trained adapter is saved in {out})",)
        raise
    emit("pushed", f"pushed {repo}@{revision}", repo=repo, revision=revision, url=url)
    return repo, revision


# ------------------------------------------------------------------ 11. main


def run(argv: list[str] | None = None) -> int:
    """The run, top to bottom: arguments, self-check, training, saving and pushing."""
    global WORLD  # this process's place among the launcher's, fixed once, read by emit
    args = parse_args(argv)
    WORLD = read_world()
    _quiet_env()
    run_id = args.run_id or default_run_id()
    emit(
        "start",
        f"run {run_id}: base {args.base_model}, dataset {args.dataset}",
        run_id=run_id,
        base_model=args.base_model,
        dataset=args.dataset,
        output_repo=args.output_repo,
    )
    self_check(args)
    # Not in a `finally`: after a failure this rank must exit at once, so that the
    # launcher ends the others (waiting in a collective for it) instead of all hanging.
    manifest = train(args, run_id)
    _leave_world()
    if not WORLD.main:
        return EXIT_OK  # rank 0 writes run.json and pushes
    repo, revision = publish(args, run_id, manifest)
    emit(
        "done",
        f"done: run {run_id} loss {manifest['first_loss']} -> {manifest['final_loss']}"
        + (f", adapter {repo}@{revision}" if repo else ", not pushed"),
        run_id=run_id,
        state="succeeded",
        repo=repo,
        revision=revision,
        train_loss=manifest["train_loss"],
        steps=manifest["steps"],
    )
    return EXIT_OK


def _leave_world() -> None:
    """Close this process's link to the others once training is over (no more collectives)."""
    torch = sys.modules.get("torch")
    if WORLD.size > 1 and torch is not None and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _oom_types() -> tuple[type[BaseException], ...]:
    torch = sys.modules.get("torch")
    return (torch.OutOfMemoryError,) if torch is not None else ()


def main(argv: list[str] | None = None) -> int:
    """Run and map every failure to one line and the contract's exit code."""
    state = "failed"
    try:
        stop_on_sigterm()
        return run(argv)
    except (BadInput, HubDown, TrainFailed, PreflightFailed) as exc:
        message, code = str(exc), exc.exit_code
    except Cancelled as exc:
        message, code, state = str(exc), exc.exit_code, "cancelled"
    except KeyboardInterrupt:
        message, code = "interrupted", EXIT_FAILED
    except Exception as exc:
        if isinstance(exc, _oom_types()):
            message = (
                "CUDA out of memory: lower --batch-size (raise --grad-accum to keep the "
                "effective batch) or --max-length, or pick larger GPU hardware"
            )
        else:
            traceback.print_exc()
            message = f"training failed: {type(exc).__name__}: {exc}".splitlines()[0]
        code = EXIT_FAILED
    if not WORLD.main and state == "cancelled":
        return code  # the launcher stopped every rank: rank 0 says so for the run
    where = f" (rank {WORLD.rank} of {WORLD.size})" if WORLD.size > 1 else ""
    print(f"train.py: error{where}: {message}", file=sys.stderr, flush=True)
    rank = {"rank": WORLD.rank} if WORLD.size > 1 else {}
    emit("error", None, every_rank=True, state=state, exit_code=code, error=message, **rank)
    return code


if __name__ == "__main__":
    sys.exit(main())
