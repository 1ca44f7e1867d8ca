"""neutron's configuration files (``--config-file`` / ``--config-dir``), read as oslo.config does.

What is oslo.config's, and how aovs gets it:

- **Tokenising a file** is oslo.config's own parser, ``oslo_config.iniparser.BaseParser`` (the
  class ``oslo_config.cfg.ConfigParser`` subclasses): ``key = value`` or ``key: value``, ``#``
  and ``;`` comments at the start of a line only, indented lines continue a value (joined with
  a newline), a blank line ends it, matching quotes around a whole value are stripped, a key may
  be repeated (every assignment is kept; the last one counts for a single-valued option), and an
  assignment before any ``[section]`` is an error. Section names are case-insensitive except
  ``[DEFAULT]`` (cfg's ``_normalize_group_name``); option names are case-sensitive.
- **Converting a value** uses ``oslo_config.types``, the converters neutron's options are declared
  with: ``Boolean`` (true/false, yes/no, on/off, 1/0, any case; nothing else), ``List`` (comma
  separated, items stripped, empty items at the end dropped), ``Integer`` and ``Float`` (an empty
  value means "not set": oslo returns None, aovs then keeps its default). aovs' own constraints
  (ranges, ``physnet:bridge``, IP addresses, choices) are then checked by the pydantic model in
  ``aovs.config``, as for the TOML form.
- **Resolving** follows ``oslo_config.cfg`` (``_ConfigFileOpt``/``_ConfigDirOpt``/
  ``_Namespace._get_file_value``): files and directories are read in command-line order, a
  directory contributing its ``*.conf`` files in sorted order at its place on the command line
  (so ``--config-dir`` after the ``--config-file`` arguments overrides them); for each option
  the newest file that sets it wins, and within that file its last assignment. A missing file
  or directory is fatal, as in oslo.config. ``$name`` / ``${name}`` / ``${group.name}`` in a
  value is oslo.config's string substitution (``ConfigOpts._substitute``): the same section's
  option first, then ``[DEFAULT]``'s; ``$$`` (or ``\\$``) is a literal ``$``, so a password with a
  ``$`` in neutron's ``transport_url`` means the same thing to aovs.

Why not ``oslo_config.cfg.ConfigOpts`` itself: it cannot list the options it was not told about
(aovs must log those as ignored), its errors embed values (a ``transport_url`` password) and its
own location objects, it wants to own the command line, and the option schema would be declared
twice (as ``cfg.Opt`` objects and as the pydantic model). Why not the standard library's
``configparser``: its ``[DEFAULT]`` section leaks into every other section, it keeps quotes,
lowercases option names, and with ``strict=False`` it drops all but the last of a repeated key;
bending it to oslo's rules would be a second, subtly different INI dialect. oslo.config is the
library that defines the dialect, is maintained with neutron, and is already on every host that
runs neutron's agent; only its two light modules are imported, and only when an INI file is read
(the TOML form does not load it).

Where each ``AgentConfig`` field is read from: top-level fields from ``[DEFAULT]``, section fields
from their section (``[ovs] bridge_mappings``), except those neutron keeps elsewhere
(:data:`NEUTRON_LOCATIONS`, e.g. ``[agent] vxlan_udp_port``). Three of neutron's options are
translated: ``[DEFAULT] debug`` -> ``[agent] log_level`` DEBUG/INFO, ``[DEFAULT] use_json`` ->
``[agent] log_format`` json/text (aovs' own ``[agent]`` option wins when both are set), and
``[DEFAULT] state_path`` (neutron's state directory, default ``/var/lib/neutron``): aovs' own state
directory ``[agent] state_path`` defaults to ``$state_path/aovs``, the way neutron derives each of
its state locations (``lock_path = $state_path/lock``, ``external_pids = $state_path/external/
pids``). Every other option in the files is ignored and listed, never fatal.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

DEFAULT = "DEFAULT"
NEUTRON_STATE_PATH = "/var/lib/neutron"  # neutron's [DEFAULT] state_path default
AOVS_STATE_PATH_DEFAULT = "$state_path/aovs"  # [agent] state_path in the INI form

# neutron's place for an option that aovs' model keeps in another section
NEUTRON_LOCATIONS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("agent", "vxlan_udp_port"): ("ovs", "vxlan_udp_port"),
    (DEFAULT, "rpc_response_timeout"): ("agent", "rpc_response_timeout"),  # oslo.messaging's
    (DEFAULT, "rpc_response_max_timeout"): ("agent", "rpc_response_max_timeout"),
    (DEFAULT, "rpc_resources_processing_step"): ("agent", "rpc_resources_processing_step"),
}

# neutron's (oslo.log's) boolean option -> (aovs field, value when true, value when false)
TRANSLATED: Mapping[tuple[str, str], tuple[tuple[str, ...], str, str]] = {
    (DEFAULT, "debug"): (("agent", "log_level"), "DEBUG", "INFO"),
    (DEFAULT, "use_json"): (("agent", "log_format"), "json", "text"),
}

Kind = Literal["bool", "list", "int", "float", "str"]
_MAX_SUBSTITUTION_DEPTH = 10


class IniError(Exception):
    """One operator-readable line naming the file (and section and option) at fault."""


@dataclass(frozen=True)
class IniFiles:
    """``--config-file`` / ``--config-dir`` arguments, in command-line order."""

    entries: tuple[tuple[Literal["file", "dir"], Path], ...]

    @classmethod
    def of(cls, *files: Path | str, config_dir: Path | str | None = None) -> IniFiles:
        """The usual command line: files in order, then (optionally) one directory."""
        entries: list[tuple[Literal["file", "dir"], Path]] = [("file", Path(f)) for f in files]
        if config_dir is not None:
            entries.append(("dir", Path(config_dir)))
        return cls(tuple(entries))

    def paths(self) -> list[Path]:
        """Every file to read, oldest first: a directory's ``*.conf`` sorted, at its place."""
        out: list[Path] = []
        for kind, given in self.entries:
            path = Path(os.path.expanduser(given))
            if kind == "file":
                out.append(path)
                continue
            if not path.exists():
                raise IniError(f"config dir {given}: not found")
            if not path.is_dir():
                raise IniError(f"config dir {given}: not a directory")
            out.extend(Path(name) for name in sorted(glob.glob(os.path.join(path, "*.conf"))))
        return out


@dataclass(frozen=True)
class Origin:
    """Where a value was read: the file, and the section and option as neutron names them."""

    file: Path
    section: str
    option: str

    @property
    def label(self) -> str:
        return f"[{self.section}] {self.option}"


@dataclass(frozen=True)
class IniResult:
    values: dict[str, Any]  # nested like AgentConfig: {"ovs": {"bridge_mappings": [...]}, ...}
    origins: dict[tuple[str, ...], Origin]  # field path -> where its value came from
    ignored: tuple[str, ...]  # "[section] option", with a hint when it looks like a mistake
    hinted: bool  # some ignored option looks like a typo or a misplaced aovs option
    files: tuple[Path, ...]  # every file read, oldest first


@dataclass(frozen=True)
class _Value:
    raw: str
    file: Path


_Sections = dict[str, dict[str, list[_Value]]]


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]
    kind: Kind
    optional: bool
    default: Any

    @property
    def natural(self) -> tuple[str, str]:
        """Its section and option if neutron does not keep it elsewhere."""
        return (DEFAULT, self.path[0]) if len(self.path) == 1 else (self.path[0], self.path[1])


def normalize_section(name: str) -> str:
    """oslo.config's ``_normalize_group_name``: case-insensitive, except ``DEFAULT``."""
    return name if name == DEFAULT else name.lower()


def is_secret(option: str) -> bool:
    """Options whose value never goes into a message (transport_url holds the broker password)."""
    name = option.lower()
    return name == "transport_url" or "password" in name or "secret" in name


def read_ini(sources: IniFiles, model: type[BaseModel]) -> IniResult:
    """Read ``sources`` into a nested dict for ``model``; raise :class:`IniError` on a bad file
    or a value that cannot be converted (pydantic checks the rest)."""
    files = sources.paths()
    layers = _Layers([(path, _parse(path)) for path in files])
    fields = _fields(model)
    locations = _locations(fields)
    substitution = _Substitution(layers, _substitution_defaults(fields, locations))

    values: dict[str, Any] = {}
    origins: dict[tuple[str, ...], Origin] = {}
    for (section, option), target in locations.items():
        found = layers.get(section, option)
        if found is None:
            continue
        where = Origin(found.file, section, option)
        converted = _convert(fields[target], substitution.resolve(where, found.raw), where)
        if converted is _UNSET:
            continue
        if target == ("securitygroup", "firewall_driver") and converted == "":
            converted = "noop"  # neutron: `firewall_driver or 'noop'`
        _put(values, target, converted)
        origins[target] = where

    for (section, option), (target, if_true, if_false) in TRANSLATED.items():
        found = layers.get(section, option)
        if found is None or target not in fields or target in origins:
            continue
        where = Origin(found.file, section, option)
        flag = _convert(_Field(target, "bool", False, False), found.raw, where)
        _put(values, target, if_true if flag else if_false)
        origins[target] = where

    state = ("agent", "state_path")
    if state in fields and state not in origins:
        # neutron's way: a state location defaults to a path under [DEFAULT] state_path
        base = layers.get(DEFAULT, "state_path")
        derived = Origin(base.file if base else Path("-"), "agent", "state_path")
        _put(values, state, substitution.resolve(derived, AOVS_STATE_PATH_DEFAULT, DEFAULT))
        if base is not None:
            origins[state] = Origin(base.file, DEFAULT, "state_path")

    read = set(locations) | set(TRANSLATED) | {(DEFAULT, "state_path")}
    ignored, hinted = _ignored(layers.keys(), read, fields)
    return IniResult(values, origins, ignored, hinted, tuple(files))


# -- parsing ---------------------------------------------------------------------------------


def _parse(path: Path) -> _Sections:
    from oslo_config import iniparser

    class Parser(iniparser.BaseParser):
        def __init__(self) -> None:
            self.sections: _Sections = {}
            self.section: str | None = None

        def new_section(self, section: str) -> None:
            self.section = normalize_section(section)
            self.sections.setdefault(self.section, {})

        def assignment(self, key: str, value: list[str]) -> None:
            if self.section is None:
                raise self.parse_exc("Section must be started before assignment", self.lineno, "")
            self.sections[self.section].setdefault(key, []).append(_Value("\n".join(value), path))

    parser = Parser()
    try:
        with path.open(encoding="utf-8") as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        raise IniError(f"config file {path}: not found") from None
    except PermissionError:
        raise IniError(f"config file {path}: permission denied") from None
    except IsADirectoryError:
        raise IniError(f"config file {path}: is a directory (use --config-dir)") from None
    except UnicodeDecodeError:
        raise IniError(f"config file {path}: not UTF-8 text") from None
    try:
        parser.parse(lines)
    except iniparser.ParseError as exc:
        # never the line itself: it may hold a password
        raise IniError(f"config file {path}: line {exc.lineno}: {exc.msg}") from None
    return parser.sections


class _Layers:
    """The parsed files; a lookup answers from the newest file that sets the option."""

    def __init__(self, parsed: list[tuple[Path, _Sections]]) -> None:
        self._newest_first = [sections for _, sections in reversed(parsed)]

    def get(self, section: str, option: str) -> _Value | None:
        for sections in self._newest_first:
            assigned = sections.get(section, {}).get(option)
            if assigned:
                return assigned[-1]
        return None

    def keys(self) -> set[tuple[str, str]]:
        return {(s, o) for sections in self._newest_first for s, opts in sections.items()
                for o in opts}  # fmt: skip


# -- the model's fields ----------------------------------------------------------------------


def _fields(model: type[BaseModel]) -> dict[tuple[str, ...], _Field]:
    out: dict[tuple[str, ...], _Field] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub, sub_info in annotation.model_fields.items():
                out[(name, sub)] = _field((name, sub), sub_info.annotation, sub_info.default)
        else:
            out[(name,)] = _field((name,), annotation, info.default)
    return out


def _field(path: tuple[str, ...], annotation: Any, default: Any) -> _Field:
    optional = False
    if get_origin(annotation) in (Union, UnionType):
        args = get_args(annotation)
        rest = [a for a in args if a is not NoneType]
        optional = len(rest) < len(args)
        annotation = rest[0] if len(rest) == 1 else str
    origin = get_origin(annotation)
    kind: Kind
    if annotation is bool:
        kind = "bool"
    elif origin in (tuple, list, set, frozenset) or annotation in (tuple, list, set, frozenset):
        kind = "list"
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "float"
    else:
        kind = "str"
    return _Field(path, kind, optional, None if default is PydanticUndefined else default)


def _locations(fields: Mapping[tuple[str, ...], _Field]) -> dict[tuple[str, str], tuple[str, ...]]:
    relocated = {target for target in NEUTRON_LOCATIONS.values() if target in fields}
    out = {f.natural: path for path, f in fields.items() if path not in relocated}
    out.update({loc: target for loc, target in NEUTRON_LOCATIONS.items() if target in fields})
    return out


_UNSET: Any = object()


def _convert(field: _Field, text: str, where: Origin) -> Any:
    from oslo_config import types

    def bad(what: str) -> IniError:
        shown = "the value" if is_secret(where.option) else repr(text)
        return IniError(f"config file {where.file}: {where.label}: {shown} is not {what}")

    if field.optional and text == "":
        return None
    try:
        if field.kind == "bool":
            return types.Boolean()(text)
        if field.kind == "list":
            return types.List()(text)
        if field.kind == "int":
            number = types.Integer()(text)
        elif field.kind == "float":
            number = types.Float()(text)
        else:
            return text
    except ValueError:
        raise bad(_WHAT[field.kind]) from None
    return _UNSET if number is None else number


_WHAT = {
    "bool": "a boolean (true/false, yes/no, on/off, 1/0)",
    "list": "a comma-separated list",
    "int": "an integer",
    "float": "a number",
}


def _put(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = values
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


# -- $substitution ---------------------------------------------------------------------------


class _Template(string.Template):
    idpattern = r"[_a-z][\._a-z0-9]*"  # oslo.config's ConfigOpts.Template


class _Unknown(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _substitution_defaults(
    fields: Mapping[tuple[str, ...], _Field], locations: Mapping[tuple[str, str], tuple[str, ...]]
) -> dict[tuple[str, str], str]:
    out = {(DEFAULT, "state_path"): NEUTRON_STATE_PATH, (DEFAULT, "host"): os.uname().nodename}
    for location, path in locations.items():
        default = fields[path].default
        derived = path == ("agent", "state_path")  # $state_path is neutron's, in every section
        if isinstance(default, str | int | float | Path) and not derived:
            out.setdefault(location, str(default))
    return out


class _Substitution:
    def __init__(self, layers: _Layers, defaults: Mapping[tuple[str, str], str]) -> None:
        self._layers = layers
        self._defaults = defaults

    def resolve(self, where: Origin, raw: str, section: str | None = None, depth: int = 0) -> str:
        """``raw`` with oslo.config's ``$name`` substitution done (unknown names are an error)."""
        if "$" not in raw:
            return raw
        if depth > _MAX_SUBSTITUTION_DEPTH:
            raise IniError(f"config file {where.file}: {where.label}: $-substitution loops")
        text = raw.replace("\\$", "$$")
        try:
            return _Template(text).safe_substitute(
                _Lookup(self, where, section or where.section, depth)
            )
        except _Unknown as exc:
            what = "a $variable" if is_secret(where.option) else f"${exc.name}"
            raise IniError(
                f"config file {where.file}: {where.label}: {what} is not an option aovs can "
                "substitute (write $$ for a literal $)"
            ) from None

    def lookup(self, where: Origin, section: str, name: str, depth: int) -> str:
        """``$name`` seen in ``where`` (an option of ``section``): the same section's option,
        else ``[DEFAULT]``'s, from the files, else its default; never the option itself."""
        group, dot, option = name.partition(".")
        candidates = [(normalize_section(group), option)] if dot else [(section, name),
                                                                       (DEFAULT, name)]  # fmt: skip
        candidates = [c for c in candidates if c != (where.section, where.option)]
        for candidate in candidates:
            found = self._layers.get(*candidate)
            if found is not None:
                return self.resolve(Origin(found.file, *candidate), found.raw, None, depth + 1)
        for candidate in candidates:
            if candidate in self._defaults:
                return self._defaults[candidate]
        raise _Unknown(name)


class _Lookup(Mapping[str, str]):
    def __init__(self, owner: _Substitution, where: Origin, section: str, depth: int) -> None:
        self._owner, self._where, self._section, self._depth = owner, where, section, depth

    def __getitem__(self, key: str) -> str:
        return self._owner.lookup(self._where, self._section, key, self._depth)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# -- what is ignored -------------------------------------------------------------------------


def _ignored(
    present: Iterable[tuple[str, str]],
    read: set[tuple[str, str]],
    fields: Mapping[tuple[str, ...], _Field],
) -> tuple[tuple[str, ...], bool]:
    """Every option in the files aovs does not read, DEFAULT first, with a hint for the likely
    mistakes: a near-miss of an option aovs reads, or an aovs option in the wrong place."""
    moved = {fields[target].natural: loc for loc, target in NEUTRON_LOCATIONS.items()
             if target in fields}  # fmt: skip
    known_sections = sorted({s for s, _ in read})
    entries: list[str] = []
    hinted = False
    for section, option in sorted(set(present) - read, key=lambda k: (k[0] != DEFAULT, k)):
        hint = ""
        if (section, option) in moved:
            s, o = moved[(section, option)]
            hint = f" (aovs reads [{s}] {o})"
        elif section in known_sections:
            close = difflib.get_close_matches(option, [o for s, o in read if s == section], 1, 0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
        else:
            close = difflib.get_close_matches(section, known_sections, 1, 0.8)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
        hinted = hinted or bool(hint)
        entries.append(f"[{section}] {option}{hint}")
    return tuple(entries), hinted


_OPTION_LABEL = re.compile(r"\[(\w+)\] (\w+)")


def labels_in(message: str) -> list[tuple[str, str]]:
    """The ``[section] option`` names a message mentions, in order."""
    return _OPTION_LABEL.findall(message)
