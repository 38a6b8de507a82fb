"""The fence-agent interface, as Pacemaker's fencer uses it.

An agent is run once per operation. Pacemaker writes its options to
standard input, one ``name=value`` per line; people and scripts may give
them as command-line options instead (``--ip=ADDR``, ``-o off``). In
names ``-`` and ``_`` are the same. Unknown options are ignored with a
warning; booleans accept ``1 yes on true`` and ``0 no off false``.

Exit codes: 0 success, 1 failure; ``status`` exits 0 when the power is
on and 2 when it is off. ``metadata`` prints XML in the shape of
``/usr/share/cluster/relaxng/metadata.rng`` (the schema Debian's
fence-agents package ships).

Passwords come only through standard input, a file or a command: a
password option on the agent's own command line is refused, since every
process on the machine could read it there.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO
from xml.etree import ElementTree

from fencekit.errors import ConfigError, FencekitError

if TYPE_CHECKING:
    from fencekit.journal import Journal

__all__ = [
    "EXIT_FAILED",
    "EXIT_OFF",
    "EXIT_OK",
    "AgentSpec",
    "Options",
    "Parameter",
    "Recorder",
    "Request",
    "metadata",
    "parse_argv",
    "parse_stdin",
    "run",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_OFF: Final = 2

KINDS: Final = frozenset({"string", "integer", "second", "boolean", "select"})
TRUE_WORDS: Final = frozenset({"1", "yes", "on", "true"})
FALSE_WORDS: Final = frozenset({"0", "no", "off", "false"})

# Accepted spellings of actions: the OCF-style "meta-data", and the
# fabric-fencing words fence-agents accept for storage agents.
_ACTION_ALIASES: Final = {
    "meta-data": "metadata",
    "enable": "on",
    "disable": "off",
}


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One option an agent accepts.

    Attributes:
        name: the option's name, with ``_`` (``-`` is accepted too).
        kind: ``string``, ``integer``, ``second``, ``boolean`` or
            ``select``.
        shortdesc: one line for the metadata and the manual.
        default: the default as text, or None.
        required: whether the metadata marks it required.
        short: a one-letter command-line form, or None.
        choices: the values a ``select`` accepts.
        replaces: an older name this one replaces (``ip`` replaces
            ``ipaddr``); the older name is accepted as a deprecated
            alias.
        secret: never logged and never accepted on the command line.
    """

    name: str
    kind: str
    shortdesc: str
    default: str | None = None
    required: bool = False
    short: str | None = None
    choices: tuple[str, ...] = ()
    replaces: str | None = None
    secret: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if (self.kind == "select") != bool(self.choices):
            raise ValueError(f"{self.name}: choices go with select only")


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """One fence agent: its name, options, actions and what it does.

    Attributes:
        name: the executable's name (``fence_fencekit_ipmi``).
        shortdesc: one line describing the agent.
        longdesc: a paragraph for the metadata.
        parameters: every option, in the order the metadata lists them.
        actions: the actions it accepts, besides ``metadata``.
        default_action: what runs when no action is given.
        unfence_on_target: ``on`` is unfencing, run by Pacemaker on the
            target node itself when it joins (storage fencing).
        handler: carries out a validated request; returns the exit code.
        checker: validates a request beyond the option types, raising
            :class:`~fencekit.errors.ConfigError`; used by every action,
            ``validate-all`` included.
    """

    name: str
    shortdesc: str
    longdesc: str
    parameters: tuple[Parameter, ...]
    actions: tuple[str, ...]
    default_action: str
    handler: Callable[[Request], int]
    checker: Callable[[Request], None]
    unfence_on_target: bool = False

    def parameter(self, name: str) -> Parameter | None:
        """Return the parameter called ``name`` (any spelling), or None."""
        wanted = _normalise(name)
        for param in self.parameters:
            if param.name == wanted:
                return param
        return None

    def canonical(self, name: str) -> str | None:
        """The current name for ``name``, following ``replaces``."""
        wanted = _normalise(name)
        for param in self.parameters:
            if wanted in (param.name, param.replaces):
                return param.name
        return None


class Options:
    """Typed option values, read through the agent's parameters.

    Values arrive as text and are converted once, when read; a value
    that does not convert raises :class:`ConfigError` naming the option.
    """

    def __init__(self, spec: AgentSpec, raw: Mapping[str, str]) -> None:
        self._spec = spec
        self._raw = dict(raw)

    def known(self, name: str) -> bool:
        """Whether the agent has an option called ``name``."""
        return self._spec.parameter(name) is not None

    def given(self, name: str) -> bool:
        """Whether the option was given (not only defaulted)."""
        return name in self._raw

    def names(self) -> list[str]:
        """The options given, in canonical spelling."""
        return sorted(self._raw)

    def text(self, name: str) -> str | None:
        """The option as text, or its default, or None."""
        param = self._param(name)
        if name in self._raw:
            return self._raw[name]
        return param.default

    def string(self, name: str) -> str | None:
        """The option as text; an empty value counts as not given."""
        value = self.text(name)
        return value if value else None

    def boolean(self, name: str) -> bool:
        """The option as a boolean.

        Raises:
            ConfigError: the value is no boolean word.
        """
        value = (self.text(name) or "0").strip().lower()
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        raise ConfigError(
            "expected 1, yes, on, true or 0, no, off, false", where=name
        )

    def integer(self, name: str) -> int | None:
        """The option as a whole number, or None when not set.

        Raises:
            ConfigError: the value is not a whole number.
        """
        value = self.string(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"expected a whole number, got {value!r}", where=name
            ) from None

    def seconds(self, name: str) -> float | None:
        """The option as a non-negative number of seconds, or None.

        Raises:
            ConfigError: the value is not a number of seconds.
        """
        value = self.string(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 <= number < float("inf"):
            raise ConfigError(
                f"expected a number of seconds, got {value!r}", where=name
            )
        return number

    def choice(self, name: str) -> str | None:
        """The option as one of its allowed values, or None.

        Raises:
            ConfigError: the value is not one of the choices.
        """
        param = self._param(name)
        value = self.string(name)
        if value is None or value in param.choices:
            return value
        allowed = ", ".join(param.choices)
        raise ConfigError(
            f"expected one of {allowed}, got {value!r}", where=name
        )

    def check_types(self) -> None:
        """Convert every option given, so a bad value fails early.

        Raises:
            ConfigError: the first value that does not convert.
        """
        readers: dict[str, Callable[[str], object]] = {
            "boolean": self.boolean,
            "integer": self.integer,
            "second": self.seconds,
            "select": self.choice,
        }
        for name in self._raw:
            reader = readers.get(self._param(name).kind)
            if reader is not None:
                reader(name)

    def _param(self, name: str) -> Parameter:
        param = self._spec.parameter(name)
        if param is None:
            raise KeyError(f"{self._spec.name} has no parameter {name!r}")
        return param


@dataclasses.dataclass
class Request:
    """One run of an agent: the action and its options.

    Attributes:
        spec: the agent.
        action: the action, after aliases (``meta-data`` is
            ``metadata``).
        options: the options given.
        out: where results go (standard output).
        err: where errors go (standard error).
    """

    spec: AgentSpec
    action: str
    options: Options
    out: TextIO
    err: TextIO

    def say(self, line: str) -> None:
        """Print a result line on standard output."""
        print(line, file=self.out)

    def fail(self, message: str) -> int:
        """Print one error line on standard error; return exit code 1."""
        text = " ".join(message.split())
        print(f"{self.spec.name}: error: {text}", file=self.err)
        return EXIT_FAILED


class Recorder:
    """Writes one operation's records to the fencekit journal that the
    ``journal`` option names, and nothing when it names none.

    Records carry the fields the fencer writes (``op``, ``node``,
    ``action``) and ``source``, the agent's name, so ``fencekit history``
    shows fences done through Pacemaker beside its own.
    """

    def __init__(
        self, request: Request, node: str, action: str, *, enabled: bool = True
    ) -> None:
        import uuid

        self._journal: Journal | None = None
        path = None
        if enabled and request.options.known("journal"):
            path = request.options.string("journal")
        if path is not None:
            from fencekit.journal import Journal

            self._journal = Journal(path)
        self._fields = {
            "op": uuid.uuid4().hex,
            "node": node,
            "action": action,
            "source": request.spec.name,
        }

    async def __call__(self, event: str, **fields: Any) -> None:
        """Append one record, synced to disk before returning.

        Raises:
            FencekitError: the journal could not be written.
        """
        if self._journal is not None:
            await self._journal.record(event, **self._fields, **fields)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@dataclasses.dataclass
class Parsed:
    """Options read from standard input or the command line.

    Attributes:
        values: canonical name to raw text.
        warnings: what was ignored, and why (never a value).
    """

    values: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def put(self, spec: AgentSpec, name: str, value: str) -> None:
        canonical = spec.canonical(name)
        if canonical is None:
            self.warnings.append(f"ignoring unknown option {name!r}")
            return
        self.values[canonical] = value


def parse_stdin(spec: AgentSpec, lines: Iterable[str]) -> Parsed:
    """Read ``name=value`` lines, as Pacemaker's fencer writes them.

    Blank lines and lines starting with ``#`` are skipped. The name ends
    at the first ``=``; one pair of double quotes around the value is
    removed. A line without ``=`` is ignored with a warning that gives
    its number, never its text (it might hold a password).
    """
    parsed = Parsed()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            parsed.warnings.append(f"ignoring line {number}: no name=value")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        parsed.put(spec, name, value)
    return parsed


def parse_argv(spec: AgentSpec, argv: Sequence[str]) -> Parsed:
    """Read command-line options: ``--name=V``, ``--name V``, ``-x V``.

    A boolean option given without a value is true. An option marked
    secret is refused: the command line is visible to every process.

    Raises:
        ConfigError: a secret option, or an option missing its value.
    """
    parsed = Parsed()
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, value = _split_arg(spec, arg)
        if name is None:
            parsed.warnings.append(f"ignoring argument {arg!r}")
            continue
        param = spec.parameter(spec.canonical(name) or name)
        if param is not None and param.secret:
            raise ConfigError(
                "not accepted on the command line, where any process can"
                " read it: give it on standard input, or use"
                " --password-file or --password-script",
                where=name,
            )
        if value is None:
            value = _take_value(param, args, name)
        parsed.put(spec, name, value)
    return parsed


def _split_arg(spec: AgentSpec, arg: str) -> tuple[str | None, str | None]:
    """Split ``--name=value`` or ``-x``; None for a bare word."""
    if arg.startswith("--") and len(arg) > 2:
        name, sep, value = arg[2:].partition("=")
        return name, value if sep else None
    if arg.startswith("-") and len(arg) == 2:
        for param in spec.parameters:
            if param.short == arg[1]:
                return param.name, None
        return arg, None
    return None, None


def _take_value(param: Parameter | None, args: list[str], name: str) -> str:
    if param is not None and param.kind == "boolean":
        if args and args[0].lower() in TRUE_WORDS | FALSE_WORDS:
            return args.pop(0)
        return "1"
    if args and not (param is None and args[0].startswith("-")):
        return args.pop(0)
    if param is None:
        return ""
    raise ConfigError("needs a value", where=name)


def metadata(spec: AgentSpec) -> str:
    """Return the agent's metadata XML.

    The shape follows fence-agents' ``metadata.rng``: parameters carry
    ``getopt``, ``content`` and a ``shortdesc``; the ``on`` action of a
    storage agent is marked ``on_target`` and ``automatic`` so Pacemaker
    unfences a node from the node itself when it joins.
    """
    root = ElementTree.Element(
        "resource-agent", name=spec.name, shortdesc=spec.shortdesc
    )
    ElementTree.SubElement(root, "longdesc").text = spec.longdesc
    ElementTree.SubElement(
        root, "vendor-url"
    ).text = "https://github.com/fencekit/fencekit"

    params = ElementTree.SubElement(root, "parameters")
    for param in spec.parameters:
        _describe(params, param, deprecated=False)
        if param.replaces:
            _describe(params, param, deprecated=True)

    actions = ElementTree.SubElement(root, "actions")
    for name in (*spec.actions, "metadata"):
        action = ElementTree.SubElement(actions, "action", name=name)
        if name == "on" and spec.unfence_on_target:
            action.set("on_target", "1")
            action.set("automatic", "1")
    ElementTree.indent(root)
    body = ElementTree.tostring(root, encoding="unicode")
    return '<?xml version="1.0" ?>\n' + body + "\n"


def _describe(
    parent: ElementTree.Element, param: Parameter, *, deprecated: bool
) -> None:
    name = param.replaces if deprecated and param.replaces else param.name
    attrs = {
        "name": name,
        "unique": "0",
        "required": "1" if param.required and not deprecated else "0",
    }
    if deprecated:
        attrs["deprecated"] = "1"
    elif param.replaces:
        attrs["obsoletes"] = param.replaces
    node = ElementTree.SubElement(parent, "parameter", attrs)

    mixed = _getopt(name, param, short=not deprecated)
    ElementTree.SubElement(node, "getopt", mixed=mixed)
    content = ElementTree.SubElement(node, "content", type=param.kind)
    if param.default is not None:
        content.set("default", param.default)
    for choice in param.choices:
        ElementTree.SubElement(content, "option", value=choice)
    desc = ElementTree.SubElement(node, "shortdesc", lang="en")
    desc.text = param.shortdesc
    if deprecated:
        desc.text = f"Deprecated spelling of {param.name}: {param.shortdesc}"


def _getopt(name: str, param: Parameter, *, short: bool) -> str:
    long = "--" + name.replace("_", "-")
    if param.secret:
        return f"{name}=[{param.name}] (standard input only)"
    if param.kind != "boolean":
        long += f"=[{param.name}]"
    return f"-{param.short}, {long}" if param.short and short else long


def run(
    spec: AgentSpec,
    argv: Sequence[str],
    stdin: TextIO,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the agent once; return its exit code.

    With command-line arguments the options come from them, otherwise
    from standard input. Every error becomes one line on standard error
    and exit code 1: Pacemaker logs the line and treats the operation as
    failed.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        parsed = parse_argv(spec, argv) if argv else parse_stdin(spec, stdin)
    except ConfigError as exc:
        print(f"{spec.name}: error: {exc}", file=err)
        return EXIT_FAILED
    options = Options(spec, parsed.values)
    action = _action(spec, options)
    request = Request(spec, action, options, out, err)

    if action == "metadata":
        out.write(metadata(spec))
        return EXIT_OK
    _configure_logging(options)
    for warning in parsed.warnings:
        _warn(spec, warning)
    if action not in spec.actions:
        known = ", ".join((*spec.actions, "metadata"))
        return request.fail(f"unknown action {action!r} (known: {known})")

    try:
        options.check_types()
        spec.checker(request)
    except FencekitError as exc:
        return request.fail(str(exc))
    if action == "validate-all":
        return EXIT_OK
    return spec.handler(request)


def _action(spec: AgentSpec, options: Options) -> str:
    action = _normalise(options.text("action") or spec.default_action)
    action = action.replace("_", "-")
    return _ACTION_ALIASES.get(action, action)


def _configure_logging(options: Options) -> None:
    """Log to standard error (Pacemaker keeps it), or to debug_file."""
    from fencekit.logging import configure

    verbose = options.known("verbose") and _safe_boolean(options, "verbose")
    verbosity = 2 if verbose else 0
    path = (
        options.string("debug_file") if options.known("debug_file") else None
    )
    if path is None:
        configure(verbosity=verbosity, json=True)
        return
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115
    except OSError:
        configure(verbosity=verbosity, json=True)
        return
    configure(verbosity=2, json=True, stream=stream)


def _safe_boolean(options: Options, name: str) -> bool:
    try:
        return options.boolean(name)
    except ConfigError:
        return False


def _warn(spec: AgentSpec, message: str) -> None:
    from fencekit._log import get_logger

    get_logger(__name__).warning(
        "agent_option_ignored", agent=spec.name, reason=message
    )
