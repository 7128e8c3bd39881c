"""Read ``config.yaml`` into the frozen dataclasses of :mod:`coldvault.config.model`.

This is the only place that validates. Every section is built by one generic
builder from the schema the model declares (each field's :class:`Key`: converter,
default, help); the converters live in :mod:`.converters`, the job-folder rules
in :mod:`.folders`. Every problem becomes one line
``FILE:LINE:COL: key.path: found ..., expected ...``; all of them (up to
:data:`~coldvault.config.problems.MAX_ERRORS`) are reported together in one
:class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coldvault.config.converters import MAX_WORK, Reader
from coldvault.config.disks import disk_warnings, read_disks
from coldvault.config.folders import JobFolders, distinct_source_names
from coldvault.config.model import (
    JOB_CLASSES,
    JOB_TYPES,
    BtrfsJob,
    Config,
    Disk,
    DiskConfig,
    ImageJob,
    Job,
    Key,
    OffsiteTarget,
    Settings,
    default_of,
    key_of,
    yaml_keys,
)
from coldvault.config.offsite import read_offsite
from coldvault.config.problems import Invalid, Reported, TooMuchWork
from coldvault.config.reading import decode, read_file, read_stdin
from coldvault.config.sections import Section
from coldvault.config.yamlnodes import (
    SyntaxProblem,
    Where,
    compose,
    describe,
    is_null,
    where,
)

T = TypeVar("T")


# -- the generic builder --------------------------------------------------------


def _build(
    reader: Reader,
    cls: type[T],
    sec: Section,
    given: dict[str, Any] | None = None,
    only: tuple[str, ...] | None = None,
) -> T | None:
    """``cls`` from the keys of ``sec``, each read as its field's :class:`Key` says.

    ``given``: fields already known; ``only``: the fields to read (a flat
    sub-section). None when a required key is missing or invalid (recorded).
    """
    values: dict[str, Any] = dict(given or {})
    complete = True
    for f in fields(cls):  # type: ignore[arg-type]
        spec = key_of(f)
        if spec is None or f.name in values or (only is not None and f.name not in only):
            continue
        if spec.flat is not None and spec.section is not None:
            values[f.name] = _build(reader, spec.section, sec, only=spec.flat)
            continue
        convert = converter(reader, spec)
        if spec.required:
            value = sec.require(f.name, convert)
            complete = complete and value is not None
        else:
            default = values.get(spec.default_from) if spec.default_from else default_of(f)
            value = sec.get(f.name, convert, default)
        values[f.name] = value
    return cls(**values) if complete else None


def converter(reader: Reader, spec: Key) -> Callable[[Node, str], Any]:
    """The converter a schema :class:`Key` names."""
    if spec.convert == "section" and spec.section is not None:
        cls = spec.section
        return lambda node, path: _section(reader, cls, node, path)
    if spec.convert == "section_list" and spec.section is not None:
        cls = spec.section
        return lambda node, path: _sections(reader, cls, node, path)
    if spec.convert == "choice":
        return reader.choice(spec.choices)
    if spec.convert == "size" and spec.limit is not None:
        return reader.size_up_to(spec.limit)
    if spec.convert == "disks":  # read with disk: in view, by config.disks.read_disks
        return lambda node, path: ()
    simple: dict[str, Callable[[Node, str], Any]] = {
        "absolute_path": reader.absolute_path,
        "apprise_url": reader.apprise_url,
        "notify_events": reader.notify_events,
        "ping_url": reader.ping_url,
        "absolute_paths": reader.list_of(reader.absolute_path),
        "boolean": reader.boolean,
        "disk_names": reader.list_of(reader.name),
        "job_names": reader.list_of(reader.name),
        "data_subset": reader.data_subset,
        "restic_repository": reader.restic_repository,
        "count": reader.integer,
        "duration": reader.duration,
        "duration_or_never": reader.duration_or_never,
        "file_not_folder": reader.file_not_folder,
        "file_path": reader.file_path,
        "hooks": reader.hooks,
        "key_file": reader.key_file,
        "md_uuid": reader.md_uuid,
        "mount_options": reader.mount_options,
        "name": reader.name,
        "plain_text": reader.plain_text,
        "relative_folder": reader.relative_folder,
        "seconds": reader.seconds,
        "size": reader.size,
        "source": reader.source,
        "times": reader.list_of(reader.time_of_day),
    }
    return simple[spec.convert]


# -- scalar types -------------------------------------------------------


def _section(reader: Reader, cls: type[T], node: Node, path: str) -> T:
    """A mapping read into ``cls``; its unknown keys are reported."""
    if not isinstance(node, MappingNode):
        raise Invalid(f"found {describe(node)}, expected a mapping of {path} keys")
    sec = Section(reader, node, path)
    sec.check_unknown(yaml_keys(cls))
    built = _build(reader, cls, sec)
    if built is None:
        raise Reported()
    return built


def _sections(reader: Reader, cls: type[T], node: Node, path: str) -> tuple[T, ...]:
    """A list of mappings, each read into ``cls``; each bad one is reported."""
    if not isinstance(node, SequenceNode):
        raise Invalid(f"found {describe(node)}, expected a list of mappings")
    out: list[T] = []
    for item, item_path in reader.items(node, path):
        try:
            out.append(_section(reader, cls, item, item_path))
        except Invalid as exc:
            reader.problem(exc.node or item, item_path, exc.message, exc.hint)
        except Reported:
            pass
    return tuple(out)


def _job(reader: Reader, node: Node, path: str) -> Job | None:
    if not isinstance(node, MappingNode):
        reader.problem(
            node, path, f"found {describe(node)}, expected a job (a mapping with name and type)"
        )
        return None
    sec = Section(reader, node, path)
    kind = sec.require("type", reader.choice(JOB_TYPES))
    if kind is None:
        sec.require("name", reader.name)
        sec.check_unknown(
            tuple(dict.fromkeys(k for c in JOB_CLASSES.values() for k in yaml_keys(c)))
        )
        return None
    cls = JOB_CLASSES[kind]
    own = yaml_keys(cls)
    others = {k: t for t, c in JOB_CLASSES.items() for k in yaml_keys(c) if k not in own}

    def explain(key: str) -> str:
        return f" (`{key}` belongs to {others[key]} jobs)" if key in others else ""

    sec.check_unknown(own, explain)
    job = _build(reader, cls, sec, given={"type": kind})
    if isinstance(job, ImageJob):
        return job if _image_sizes_fit(reader, sec, job) else None
    if isinstance(job, BtrfsJob):
        return job if _btrfs_sources_fit(reader, sec, job) else None
    return None


def _image_sizes_fit(reader: Reader, sec: Section, job: ImageJob) -> bool:
    if job.block_size % 512:
        reader.problem(
            sec.value("block_size") or sec.node,
            sec.sub("block_size"),
            f"found {job.block_size} bytes, expected a multiple of 512 (device sector size)",
        )
        return False
    if job.part_size % job.block_size:
        reader.problem(
            sec.value("part_size") or sec.node,
            sec.sub("part_size"),
            f"found {job.part_size} bytes, expected a multiple of block_size "
            f"({job.block_size} bytes)",
        )
        return False
    return True


def _btrfs_sources_fit(reader: Reader, sec: Section, job: BtrfsJob) -> bool:
    node = sec.value("sources") or sec.node
    if isinstance(node, SequenceNode) and not node.value:
        reader.problem(
            node, sec.sub("sources"), "found an empty list, expected at least one subvolume path"
        )
        return False
    if not job.sources:  # every one invalid, each reported
        return False
    return distinct_source_names(reader, job.sources, node, sec.sub("sources"))


def _raw_name(node: Node) -> str | None:
    """The ``name:`` written in a job mapping, valid or not (for duplicate checks)."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            named = isinstance(key, ScalarNode) and key.value == "name"
            if named and isinstance(value, ScalarNode) and not is_null(value):
                return str(value.value)
    return None


def _jobs(reader: Reader, sec: Section, disks: tuple[Disk, ...]) -> tuple[Job, ...]:
    node = sec.value("jobs")
    if node is None:
        at = sec.items["jobs"][1] if "jobs" in sec.items else sec.node
        reader.problem(at, "jobs", "missing, expected a list with at least one job")
        return ()
    if not isinstance(node, SequenceNode) or not node.value:
        reader.problem(
            node, "jobs", f"found {describe(node)}, expected a list with at least one job"
        )
        return ()
    jobs: list[Job] = []
    names: dict[str, int] = {}
    folders = JobFolders(reader, [d.config for d in disks])
    for i, item in enumerate(node.value):
        reader.spend(item)
        path = f"jobs[{i}]"
        job = _job(reader, item, path)
        name = _raw_name(item)
        if name is not None and name in names:
            reader.problem(
                item,
                f"{path}.name",
                f"found {name!r} again (also jobs[{names[name]}]), expected unique job names",
            )
            continue
        if name is not None:
            names[name] = i
        if job is None or not _known_disks(reader, job, item, path, disks):
            continue
        if folders.claim(job, item, f"{path}.target"):
            jobs.append(job)
    return tuple(jobs)


def _known_disks(reader: Reader, job: Job, item: Node, path: str, disks: tuple[Disk, ...]) -> bool:
    """A job's ``disks:`` names configured disks only."""
    names = [d.name for d in disks]
    unknown = [n for n in job.disks if n not in names]
    if not unknown:
        return True
    at = _value_of(item, "disks") or item
    reader.problem(
        at,
        f"{path}.disks",
        f"found {unknown[0]!r}, expected the name of a configured disk: {', '.join(names)}",
    )
    return False


def _value_of(node: Node, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key and isinstance(v, Node):
                return v
    return None


# -- entry points ---------------------------------------------------------------


def load_text(text: str, source_name: str, base_dir: Path) -> Config:
    """Validate ``text`` (read from ``source_name``) into a :class:`Config`.

    Relative paths in it are resolved against ``base_dir``. Raises ConfigError
    listing every problem found.
    """
    reader = Reader(source_name, base_dir)
    try:
        root = compose(text)
    except SyntaxProblem as exc:
        reader.problems.add(exc.where, "", exc.message, exc.hint)
        raise reader.problems.error() from None
    if root is None:
        reader.problems.add(
            Where(1, 1), "", "the file is empty, expected a mapping with disk: and jobs: keys"
        )
        raise reader.problems.error()
    if not isinstance(root, MappingNode):
        reader.problem(
            root, "", f"found {describe(root)}, expected a mapping with disk: and jobs: keys"
        )
        raise reader.problems.error()
    try:
        top = Section(reader, root, "")
        top.check_unknown(yaml_keys(Config))
        disk = top.get("disk", lambda n, p: _section(reader, DiskConfig, n, p), DiskConfig())
        disks = read_disks(reader, top, disk, lambda sec: _build(reader, DiskConfig, sec))
        settings = top.get("settings", lambda n, p: _section(reader, Settings, n, p), Settings())
        jobs = _jobs(reader, top, disks)
        build = lambda n, p: _section(reader, OffsiteTarget, n, p)  # noqa: E731
        offsite = read_offsite(reader, top, jobs, build)
    except TooMuchWork as exc:
        reader.problems.add(
            where(exc.node),
            "",
            f"found more than {MAX_WORK} keys and list items (each use of an alias counted), "
            "expected a configuration of a few hundred",
            hint="anchors, aliases and `<<:` merges are expanded where they are used",
            first=True,
        )
        raise reader.problems.error() from None
    if reader.problems:
        raise reader.problems.error()
    path = None if source_name == "<stdin>" else Path(source_name)
    warnings = disk_warnings(disks)  # shown by `config validate`, logged by the daemon
    return Config(
        path=path,
        disk=disks[0].config,
        disks=disks,
        jobs=jobs,
        offsite=offsite,
        settings=settings,
        disk_name=disks[0].name,
        warnings=warnings,
    )


def load(path: Path | str) -> Config:
    """Load and validate a configuration file; ``-`` reads standard input.

    Raises ConfigError (exit status 78) for anything wrong with the file.
    """
    if str(path) == "-":
        return load_text(decode(read_stdin(), "<stdin>"), "<stdin>", Path.cwd())
    file = Path(path)
    data = read_file(file)
    absolute = file if file.is_absolute() else Path.cwd() / file
    config = load_text(decode(data, str(file)), str(file), absolute.parent)
    return replace(config, path=absolute)
