"""`dala`: the command line of the store.

Commands that set a database up (init, demo, migrate) create it; commands that only read
(profile, history, diff, learners, interface, export, disclosures) never create a file, a
folder or a table, and say so when there is no database. Those that show a learner's data
(profile, history, diff, interface, export) add a row to the existing disclosure log, attributed
to the group's `--actor`/`--reason` (a `recorded_as` block around the whole command).
Human output is tables that stay readable at 80 columns; `--json` prints one JSON document,
every time as RFC 3339 UTC (`2026-11-25T11:36:00Z`).
Errors go to stderr as one line with exit status 1 (2 for a wrong command line), never a
traceback. Imports of the package are deferred into the commands, so that a read does not
load what only a write or a migration needs (start-up time is most of a read's time).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from dala_events.errors import DalaError, InvalidInput, LearnerErasedError, LearnerNotFound

F = TypeVar("F", bound=Callable[..., Any])

LIBRARY_LOGGER = "dala_events"


def _print_table(table: Any, console: Any = None) -> None:
    """Print a rich `table` as wide as its content and no wider than the terminal, no line
    padded with spaces. Its flexible columns (`ratio`) take the width the others leave, and
    cut (`…`) or wrap what does not fit, as each column says."""
    out = console if console is not None else _console()
    table.expand = False
    natural = out.measure(table, options=out.options.update_width(_UNBOUNDED)).maximum
    table.expand = True
    table.width = min(natural, out.width)
    out.print(_Trimmed(table))


_UNBOUNDED = 1_000_000
"""A width no table reaches: what a table is measured in to learn its content's width."""


class _Trimmed:
    """A rich renderable printed without the spaces rich pads each line with on the right."""

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line.pop()
                line.append(Segment(last.text.rstrip(" "), last.style, last.control))
            yield from line
            yield Segment.line()


def _console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich's documented hook (its default exits with 1)
            _quiet_closed_pipe()

    # markup off: learner-supplied text must print as it is, never as rich markup.
    return _Console(stderr=stderr, soft_wrap=False, markup=False, highlight=False, emoji=False)


# ---------------------------------------------------------------------------------------------
# Options every command shares, and error reporting
# ---------------------------------------------------------------------------------------------


class Options:
    """What the options every command shares decided (before or after the command name)."""

    def __init__(self) -> None:
        self.database_url: str | None = None
        self.url_from_environment = False
        self.quiet = False
        self.verbose = 0
        self.actor: str | None = None
        self.reason: str | None = None
        self.from_environment: set[str] = set()
        """The options whose value came from their environment variable (`--actor` from DALA_ACTOR)."""
        self.started = False
        self.dala: Any = None
        """The store the command opened (`_dala`), if it has."""

    def say(self, message: str) -> None:
        """A status line (not data): left out with --quiet."""
        if not self.quiet:
            click.echo(message)

    def start(self, context: click.Context) -> None:
        """Once the command's own options are read: logging, and the attribution of what it records."""
        if self.started:
            return
        self.started = True
        _setup_logging(self.verbose, self.quiet)
        if self.actor is not None or self.reason is not None:
            from dala_events.attribution import recorded_as

            try:
                context.with_resource(recorded_as(self.actor, reason=self.reason))
            except InvalidInput as error:
                if error.field == "actor" and "actor" in self.from_environment:  # configuration: status 1
                    raise InvalidInput("DALA_ACTOR", error.problem) from None
                raise BadValue(f"--{error.field}: {error.problem}") from None


def _remember_database_url(context: click.Context, _parameter: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        options = context.ensure_object(Options)
        options.database_url = value
        source = context.get_parameter_source("database_url")
        options.url_from_environment = source is click.core.ParameterSource.ENVIRONMENT
    return value


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback keeping an option's value in `Options` when it was given (a later one wins)."""

    def keep(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
        if value not in (None, 0, False):
            options = context.ensure_object(Options)
            setattr(options, name, value)
            source = context.get_parameter_source(parameter.name) if parameter.name else None
            if source is click.core.ParameterSource.ENVIRONMENT:
                options.from_environment.add(name)
            else:
                options.from_environment.discard(name)
        return value

    return keep


_DATABASE_URL_HELP = "SQLAlchemy URL of the database (default: sqlite:///database/edpsych_connect_dala.db)."
_VERBOSE_HELP = "Show what the library does (-v: steps, -vv: every append)."
_QUIET_HELP = "Print only data and errors."
_ACTOR_HELP = "Who is acting (e.g. teacher:42), recorded with every change and disclosure. Also DALA_ACTOR."
_REASON_HELP = "Why, recorded with every change and disclosure."


def _shared_options(*, reason: bool = True) -> Callable[[F], F]:
    """The options every command takes, after the command name too (`dala profile ann -q`)."""

    def decorate(command: F) -> F:
        shared = [
            click.option(
                "--database-url",
                default=None,
                expose_value=False,
                callback=_remember_database_url,
                help=_DATABASE_URL_HELP,
            ),
            click.option(
                "-v", "--verbose", count=True, expose_value=False, callback=_remember("verbose"), help=_VERBOSE_HELP
            ),
            click.option(
                "-q", "--quiet", is_flag=True, expose_value=False, callback=_remember("quiet"), help=_QUIET_HELP
            ),
            click.option(
                "--actor",
                default=None,
                metavar="KIND:ID",
                expose_value=False,
                callback=_remember("actor"),
                help=_ACTOR_HELP,
            ),
        ]
        if reason:
            shared.append(
                click.option(
                    "--reason", default=None, expose_value=False, callback=_remember("reason"), help=_REASON_HELP
                )
            )
        for option in shared:
            command = option(command)
        return command

    return decorate


_database_url_option = _shared_options()


def _reports_errors(command: F) -> F:
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            context = click.get_current_context()
            context.ensure_object(Options).start(context)
            result = command(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
            return result
        except BrokenPipeError:
            _quiet_closed_pipe()
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except LearnerNotFound as error:
            _fail(_with_learner_hint(error))
        except DalaError as error:
            _fail(_with_setting_name(error))
        except Exception as error:  # a database or OS failure: say what, not where
            _fail(_one_line(error))

    return run  # type: ignore[return-value]


def _quiet_closed_pipe() -> None:
    """The reader of our output went away (`dala history x | head -1`): it had what it wanted.
    Nothing more is written (stdout now goes nowhere) and the status is 0."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


class _DalaGroup(click.Group):
    """The `dala` group: every usage error is one line on stderr with status 2 (as the README
    promises), not click's block of usage text."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
            click.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _on_a_terminal() -> bool:
    """Whether a person is there to answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _with_setting_name(error: DalaError) -> str:
    options = click.get_current_context().find_object(Options)
    if isinstance(error, InvalidInput) and error.field == "database_url" and options and options.url_from_environment:
        return f"DALA_DATABASE_URL: {error.problem}"
    return str(error)


def _with_learner_hint(error: LearnerNotFound) -> str:
    """The message of a learner not found, pointing to the list of those the store knows when
    the store has never heard of them (not for a deleted or erased learner, or a point in a
    known learner's history before their profile)."""
    options = click.get_current_context().find_object(Options)
    store = None if options is None or options.dala is None else options.dala.store
    if isinstance(error, LearnerErasedError) or store is None:
        return str(error)
    try:
        unknown = store.stream_version(error.learner_id) == 0
    except Exception:  # the hint is a courtesy: the error is said whatever happens here
        unknown = False
    return f"{error} (see `dala learners`)" if unknown else str(error)


@contextmanager
def _given_as(exit_status: int = 2, **options: str) -> Iterator[None]:
    """Inside: InvalidInput about a value the command line gave (`field=option`, e.g.
    `version="--version"`) names the option, and is a wrong command line (exit status 2), or,
    with `exit_status=1`, a value that the state of things makes unusable (a full disk)."""
    try:
        yield
    except InvalidInput as error:
        if error.field not in options:
            raise
        if exit_status == 2:
            raise BadValue(f"{options[error.field]}: {error.problem}") from None
        raise InvalidInput(options[error.field], error.problem) from None


def _one_line(error: Exception) -> str:
    """A failure from below (SQLAlchemy, the driver, the OS) as one line: what and what to do."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(error, OperationalError) and error.orig is not None:
        first = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
        return f"cannot use the database: {first}; check that the server runs and the URL is right (--database-url)"
    if isinstance(error, DBAPIError) and error.orig is not None:
        first = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
        return f"the database refused: {first}"
    if isinstance(error, OSError):  # what failed, and where, in words
        from dala_events.errors import in_words

        where = f": {error.filename}" if error.filename else ""
        return f"the system refused{where}: {in_words(error)}"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"an unexpected failure: {text}" if text else "an unexpected failure; run again with -v to see the steps"


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Show the library's log records on stderr: -v INFO, -vv DEBUG; -q errors only.

    The command owns its process, so it may configure logging; the library never does.
    """
    logger = logging.getLogger(LIBRARY_LOGGER)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


@click.group(cls=_DalaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="DALA_DATABASE_URL",
    default=None,
    callback=_remember_database_url,
    expose_value=False,
    help=_DATABASE_URL_HELP + " Also DALA_DATABASE_URL.",
)
@click.option("-v", "--verbose", count=True, expose_value=False, callback=_remember("verbose"), help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_remember("quiet"), help=_QUIET_HELP)
@click.option(
    "--actor",
    envvar="DALA_ACTOR",
    default=None,
    metavar="KIND:ID",
    expose_value=False,
    callback=_remember("actor"),
    help=_ACTOR_HELP,
)
@click.option("--reason", default=None, expose_value=False, callback=_remember("reason"), help=_REASON_HELP)
@click.version_option(package_name="dala-events")
@click.pass_context
def main(context: click.Context) -> None:
    """DALA events: the event-sourced learner-profile store.

    Every command also takes --database-url, -v, -q, --actor and --reason after its name.
    Shell completion: eval "$(_DALA_COMPLETE=bash_source dala)" (zsh_source, fish_source).
    """
    context.ensure_object(Options)


def _dala(options: Options, mode_name: str = "read") -> Any:
    """The store the command works on: `Dala` from `Settings.from_env()` and `--database-url`,
    opened as `mode_name` says (see `wiring.Mode`), closed when the command ends."""
    from dala_events.app import Dala
    from dala_events.settings import Settings
    from dala_events.wiring import Mode

    settings = Settings.from_env().with_database(options.database_url)
    dala = Dala.open(settings, mode=Mode(mode_name))
    click.get_current_context().call_on_close(dala.close)
    options.dala = dala
    return dala


_force_option = click.option("--force", is_flag=True, help="Replace FILE if it exists (by default it is refused).")

_out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page (default: database/interface/<learner>.html).",
)


# ---------------------------------------------------------------------------------------------
# Set-up and the main job
# ---------------------------------------------------------------------------------------------


@main.command()
@_database_url_option
@click.pass_obj
@_reports_errors
def init(options: Options) -> None:
    """Create the event log and the eight read-model tables where missing."""
    dala = _dala(options, "create")
    options.say(f"database ready: {dala.engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.option("--learner", default="student123", show_default=True, help="Learner id of the demo learner.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the simulated assessment.")
@_out_option
@_database_url_option
@click.pass_obj
@_reports_errors
def demo(options: Options, learner: str, seed: int, out: Path | None) -> None:
    """The main job: assess a learner, plan their pathway, make a start, and write their page.

    A learner who already has a profile is kept as is and their page is rendered again.
    Nothing is written when the page could not be (the actor its disclosure needs, --out).
    """
    _check_out(out)
    dala = _dala(options, "create")
    with _given_as(exit_status=1, output_path=_page_source(dala, out)):
        result = dala.demo(learner, seed, out)
    if result.assessment is not None:
        found = result.assessment
        options.say(
            f"assessed {learner} (seed {seed}): interests {', '.join(found.interests)}; "
            f"struggle areas {', '.join(found.struggles)}"
        )
        options.say(f"{_count(result.events_recorded, 'event')} recorded")
    else:
        options.say(f"{learner} already has a profile; nothing recorded, page rendered again")
    for number, step in enumerate(result.pathway, start=1):
        options.say(f"  {number}. {step.lo_id} {step.title}: {step.reason}")
    options.say(f"page written: {result.page}")


@main.command()
@click.argument("learner")
@_out_option
@_database_url_option
@click.pass_obj
@_reports_errors
def interface(options: Options, learner: str, out: Path | None) -> None:
    """Render a stored learner's page (self-contained HTML) from the read models."""
    _check_out(out)
    dala = _dala(options)
    with _given_as(exit_status=1, output_path=_page_source(dala, out)):
        written = dala.render_page(learner, out)
    options.say(f"page written: {written}")


def _check_out(out: Path | None, option: str = "--out") -> None:
    """Refuse a destination the command line gave that cannot take a file, before anything is
    opened or written; its folder must exist (the command line makes no folder it was given)."""
    if out is not None:
        from dala_events.private_files import check_destination

        check_destination(out, name=option, create_folder=False)


def _page_source(dala: Any, out: Path | None) -> str:
    """What chose where a page goes, to name in a message: --out, DALA_PAGE_DIR, or the default."""
    if out is not None:
        return "--out"
    return "DALA_PAGE_DIR" if dala.settings.page_dir is not None else "the page folder"


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--limit", "-n", default=100, show_default=True, type=click.IntRange(1, 10_000), help="Learners per page."
)
@click.option(
    "--after", default=None, metavar="ID", help="Start after this learner id (the last of the previous page)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_database_url_option
@click.pass_obj
@_reports_errors
def learners(options: Options, limit: int, after: str | None, as_json: bool) -> None:
    """List the learners the store knows: id, created, last updated, number of changes."""
    found = _dala(options).learners(after=after, limit=limit)
    damaged = [summary for summary in found if summary.damaged]
    if as_json:
        _print_json([_json_ready(summary.model_dump()) for summary in found])
        _fail_naming_damage(damaged)
        return
    from rich.table import Table

    table = Table(title=f"{_count(len(found), 'learner')}", title_justify="left", show_edge=False)
    table.add_column("learner", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("first recorded (UTC)", no_wrap=True)
    table.add_column("last recorded (UTC)", no_wrap=True)
    table.add_column("changes", justify="right", no_wrap=True)
    table.add_column("profile", no_wrap=True)
    for summary in found:
        table.add_row(
            summary.learner_id,
            _minute(summary.created_at),
            _minute(summary.last_updated_at),
            str(summary.changes),
            "yes" if summary.has_profile else "erased" if summary.erased else "deleted",
        )
    _print_table(table)
    if len(found) == limit:
        options.say(f"more: dala learners --after {found[-1].learner_id!s}")
    _fail_naming_damage(damaged)


def _fail_naming_damage(damaged: list[Any]) -> None:
    """Exit 1 naming each learner's rows whose recorded time does not read back."""
    for summary in damaged:
        click.echo(f"error: learner {summary.learner_id!r}: {summary.damaged}", err=True)
    if damaged:
        _fail("the event log holds damaged rows (listed above); run `dala verify`")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_database_url_option
@click.pass_obj
@_reports_errors
def subscriptions(options: Options, as_json: bool) -> None:
    """List the subscriptions following the log: the log position of the last event each
    acknowledged, its lag (events after it) and the event types it delivers."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    found = _dala(options).subscriptions()
    if as_json:
        _print_json([_json_ready(dataclasses.asdict(status)) for status in found])
        return
    from rich.table import Table

    table = Table(title=_count(len(found), "subscription"), title_justify="left", show_edge=False)
    table.add_column("subscription", overflow="ellipsis", no_wrap=True, max_width=24)
    table.add_column("position", justify="right", no_wrap=True)
    table.add_column("lag", justify="right", no_wrap=True)
    table.add_column("acknowledged (UTC)", no_wrap=True)
    table.add_column("event types", no_wrap=True)
    listed = []
    for status in found:
        acknowledged = _minute(status.updated_at) if status.position else "never"
        if not status.filter_recorded:
            types = "not recorded"
        elif status.event_types is None:
            types = "every type"
        else:
            types = _count(len(status.event_types), "type")
            listed.append(f"{_safe(status.name)}: {', '.join(status.event_types)}")
        table.add_row(_safe(status.name), str(status.position), f"{status.lag:,}", acknowledged, types)
    console = _console()
    _print_table(table, console)
    for line in listed:  # the types themselves, below the table: too long for a column
        console.print(line, overflow="fold")
    if not all(status.filter_recorded for status in found):
        console.print("not recorded: opened before event types were kept; the next open records them")


@subscriptions.command("reset")
@click.argument("name")
@_database_url_option
@click.pass_obj
@_reports_errors
def subscriptions_reset(options: Options, name: str) -> None:
    """Start subscription NAME over: its checkpoint and event types are forgotten, and the next
    open starts from the beginning of the log with the types it gives (every event is delivered
    again)."""
    if not _dala(options).reset_subscription(name):
        raise DalaError(f"there is no subscription {name!r}; see `dala subscriptions`")
    options.say(
        f"subscription {name!r} reset: its next open starts from the beginning of the log with the event "
        "types it gives"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_database_url_option
@click.pass_obj
@_reports_errors
def status(options: Options, as_json: bool) -> None:
    """Show where everything lives: the database, the key store, the master key's source (never
    the key), the log key's id, the page folder, the schema revision, how many learners and
    events, and what a backup must carry. Creates and changes nothing; exit 1 when something
    needed is missing or does not fit."""
    found = _dala(options, "raw-create").status()
    if as_json:
        _print_json({**found.as_dict(), "problems": found.problems})
        sys.exit(1 if found.problems else 0)
    database, key_store, master = found.database, found.key_store, found.master_key
    if database.exists:
        revision = database.schema_revision or "none"
        state = "current" if revision == database.code_revision else f"this code needs {database.code_revision}"
        click.echo(f"database:    {database.url}")
        click.echo(f"             schema {revision} ({state})")
        if database.events is not None:
            click.echo(f"             {_count(database.learners or 0, 'learner')}, {_count(database.events, 'event')}")
    else:
        click.echo(f"database:    {database.url} (none there yet: `dala init` makes one)")
    if key_store.exists:
        click.echo(f"key store:   {key_store.location}")
        click.echo(f"             id {key_store.id}, keys wrapped by master key {key_store.master_key_id}")
        click.echo(
            f"             {_count(key_store.data_keys or 0, 'data key')}, {_count(key_store.erasures or 0, 'erasure')}"
        )
    else:
        click.echo(f"key store:   {key_store.location} (none there yet)")
    click.echo(f"master key:  {master.source}" + (f" (id {master.id})" if master.id else ""))
    if found.log_key_id is not None:
        click.echo(f"log key:     id {found.log_key_id}")
    else:
        click.echo("log key:     none (the chain is plain SHA-256)")
    click.echo(f"pages:       {found.page_folder}")
    click.echo("a backup must carry:")
    for carried in found.backup:
        click.echo(f"  {carried.what}: {carried.where}")
        click.echo(textwrap.fill(carried.how, width=78, initial_indent="    ", subsequent_indent="    "))
    for problem in found.problems:
        click.echo(f"error: {problem}", err=True)
    if found.problems:
        sys.exit(1)


@main.group()
def keys() -> None:
    """The key store: learners' data keys, wrapped by the master key."""


@keys.command("rotate")
@click.option(
    "--new-master-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A file holding the new master key (64 hex digits); default: DALA_NEW_MASTER_KEY.",
)
@_database_url_option
@click.pass_obj
@_reports_errors
def keys_rotate(options: Options, new_master_key_file: Path | None) -> None:
    """Re-wrap every data key under a new master key, without touching the event log.

    The current master key (DALA_MASTER_KEY, DALA_MASTER_KEY_FILE or the embedded default)
    must open the key store. Afterwards configure the new key where the old one was.
    """
    from dala_events.settings import master_key_from_file

    new_key = None
    if new_master_key_file is not None:
        new_key = master_key_from_file(new_master_key_file, source="--new-master-key-file")
    dala = _dala(options, "raw")
    count = dala.rotate_master_key(new_key)
    new_key_id = (new_key or dala.settings.new_master_key).key_id
    options.say(f"re-wrapped {_count(count, 'data key')} under master key {new_key_id}")


@keys.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_force_option
@_database_url_option
@click.pass_obj
@_reports_errors
def keys_backup(options: Options, file: Path, force: bool) -> None:
    """Write a consistent copy of the key store to FILE (safe while writers write).

    Wrapped data keys and erasures' tombstones only, never the master key; a checksum of the
    whole file. Take it after the log's backup (or use `dala backup FILE --keys KEYS_FILE`),
    keep it apart from the log's backups, and no longer than erasures allow.
    """
    dala = _dala(options, "raw")
    result = dala.backup_keys(file, replace=force)
    _say_key_backup(options, result)
    if not result.complete:
        _fail(
            f"the key store {dala.storage.key_store_location()} is damaged: {result.path} holds every key that reads "
            "and is marked incomplete; no new learner is accepted until the key store is repaired (see the README's "
            "'Keeping the keys')"
        )


def _say_key_backup(options: Options, result: Any) -> None:
    """What a key backup did, and on stderr each row of the key store it found damaged."""
    options.say(
        f"backed up {_count(result.keys, 'data key')} and {_count(result.tombstones, 'erasure')} of key store "
        f"{result.store_id} (master key {result.master_key_id}) to {result.path}"
    )
    for row in result.damaged:
        click.echo(f"error: damaged key store: {row.describe()}", err=True)


@keys.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_database_url_option
@click.pass_obj
@_reports_errors
def keys_restore(options: Options, file: Path) -> None:
    """Restore a key backup FILE into the configured key store (created if missing).

    The configured master key must be the one the backup's keys are wrapped with. Keys of
    learners the key store already holds are merged when they are the same; a conflict
    refuses the whole file, writing nothing.
    """
    result = _dala(options, "raw-create").restore_keys(file)
    options.say(
        f"restored {_count(result.keys, 'data key')} and {_count(result.tombstones, 'erasure')} "
        f"from {result.path} (key store {result.store_id}, master key {result.master_key_id})"
    )
    for row in result.damaged:
        options.say(f"note: the backup was taken from a damaged key store: {row.describe()}")


@main.command()
@click.argument("learner")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Show it as it was recorded by this time (ISO 8601; naive = UTC): what the store showed then.",
)
@click.option(
    "--happened-by",
    "happened_by",
    default=None,
    help="Show it built from every change that had happened by this time (ISO 8601), backdated ones included.",
)
@click.option("--version", "version", default=None, type=int, help="Show it after this change (a stream version).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_database_url_option
@click.pass_obj
@_reports_errors
def profile(
    options: Options, learner: str, as_of: str | None, happened_by: str | None, version: int | None, as_json: bool
) -> None:
    """Show a learner's profile as the read models hold it, or as it stood at a point.

    Two clocks: --as-of is when changes were recorded, --happened-by when they happened.
    """
    from dala_events.audit import missing_profile_error

    if sum(point is not None for point in (as_of, happened_by, version)) > 1:
        raise click.UsageError("give one of --as-of, --happened-by and --version")
    at = None if as_of is None else _parse_time(as_of, "--as-of")
    by = None if happened_by is None else _parse_time(happened_by, "--happened-by")
    dala = _dala(options)
    point = None
    if at is None and version is None and by is None:
        data = dala.full_profile(learner)
        if data is None:
            raise missing_profile_error(learner, store=dala.store)
    elif by is not None:
        dala.history_point(learner, version=0)  # an unknown learner is an error, as for the others
        data = dala.as_of(learner, happened_by=by)
        if data is None:
            had_none = f"learner {learner!r} had no profile by {happened_by} (by when the changes happened)"
            raise missing_profile_error(learner, store=dala.store, not_found=LearnerNotFound(learner, had_none))
    else:
        with _given_as(version="--version"):
            point = dala.history_point(learner, at=at, version=version)
        data = dala.as_of(learner, version=point.version) if point.version else None
        if data is None:
            when = f"at {as_of}" if as_of is not None else f"at version {version}"
            had_none = f"learner {learner!r} had no profile {when} (its last change is {point.last_version})"
            raise missing_profile_error(learner, store=dala.store, not_found=LearnerNotFound(learner, had_none))
    dala.record_disclosure(learner, "cli_profile")
    if as_json:
        document = _json_ready(data.model_dump())
        if point is not None:
            document = {"as_of": {"version": point.version, "recorded_at": _json_time(point.recorded_at)}, **document}
        elif by is not None:
            document = {"happened_by": _json_time(by), **document}
        _print_json(document)
    else:
        _print_profile(data, point, by)


class _EventTypeOption(click.Option):
    """`--type`: its help and shell completion name the event types, read from the package
    only when asked (importing the events at start-up would slow every command down)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from dala_events.events import EVENT_TYPES

        record = super().get_help_record(ctx)
        if record is None:
            return None
        names, text = record
        return names, f"{text} One of: {', '.join(EVENT_TYPES)}."

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from dala_events.events import EVENT_TYPES

        return [CompletionItem(name) for name in EVENT_TYPES if name.startswith(incomplete)]


@main.command()
@click.argument("learner")
@click.option("--since", default=None, help="Only events recorded at or after this time (ISO 8601; naive = UTC).")
@click.option("--until", default=None, help="Only events recorded at or before this time (ISO 8601; naive = UTC).")
@click.option("--happened-since", default=None, help="Only changes that happened at or after this time (ISO 8601).")
@click.option("--happened-until", default=None, help="Only changes that happened at or before this time (ISO 8601).")
@click.option(
    "--type",
    "event_types",
    cls=_EventTypeOption,
    multiple=True,
    metavar="EVENT",
    help="Only events of this type (repeatable).",
)
@click.option(
    "--limit", "-n", default=None, type=click.IntRange(1), help="Show only the last N (the first N with --reverse)."
)
@click.option("--reverse", is_flag=True, help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of events, with everything recorded.")
@_database_url_option
@click.pass_obj
@_reports_errors
def history(
    options: Options,
    learner: str,
    since: str | None,
    until: str | None,
    happened_since: str | None,
    happened_until: str | None,
    event_types: tuple[str, ...],
    limit: int | None,
    reverse: bool,
    as_json: bool,
) -> None:
    """List a learner's changes: who changed what, when, and why.

    Two clocks: --since/--until bound when a change was recorded, --happened-since and
    --happened-until when it happened (earlier, for a backdated import).
    """
    from dala_events.summaries import curriculum_titles, describe_change

    bounds = _time_bounds(
        {"--since": since, "--until": until, "--happened-since": happened_since, "--happened-until": happened_until}
    )
    dala = _dala(options)
    with _given_as(event_types="--type"):
        events = dala.history(
            learner,
            since=bounds["--since"],
            until=bounds["--until"],
            happened_since=bounds["--happened-since"],
            happened_until=bounds["--happened-until"],
            event_types=event_types or None,
        )
    if not events and dala.store.stream_version(learner) == 0:
        raise LearnerNotFound(learner, f"learner {learner!r} has no recorded changes")
    dala.record_disclosure(learner, "cli_history")
    total = len(events)
    if reverse:
        events = list(reversed(events))
    if limit is not None:
        events = events[:limit] if reverse else events[-limit:]
    if as_json:
        _print_json([_event_json(event) for event in events])
        return
    from rich.table import Table

    shown = f", showing {len(events)}" if len(events) < total else ""
    title = f"History of {learner}: {_count(total, 'change')}{shown}"
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, expand=True)
    actors = [str(event.metadata.get("actor", "")) for event in events]
    # Fixed widths for the short columns; what (and why, on a line of its own) take the rest,
    # each line cut with an ellipsis rather than wrapped.
    number_width = max((len(str(event.version)) for event in events), default=1)
    table.add_column("#", justify="right", no_wrap=True, width=number_width)
    table.add_column("recorded (UTC)", no_wrap=True, width=16)
    table.add_column("by", no_wrap=True, overflow="ellipsis", width=min(max(map(len, actors), default=2), 18))
    table.add_column("what / why", no_wrap=True, overflow="ellipsis", ratio=1)
    titles = curriculum_titles()
    for event, actor in zip(events, actors, strict=True):
        notes = []
        if abs(event.recorded_at - event.occurred_at).total_seconds() >= 60:
            notes.append(f"happened {_minute(event.occurred_at)}")
        if event.metadata.get("reason"):
            notes.append(f"why: {event.metadata['reason']}")
        what = "\n  ".join([_safe(describe_change(event.event, titles)), *map(_safe, notes)])
        table.add_row(str(event.version), _minute(event.recorded_at), _safe(actor), what)
    _print_table(table)
    if not events:
        options.say("no change matches (the learner has changes outside the filters)")


@main.command()
@click.argument("learner")
@click.argument("start", required=False)
@click.argument("end", required=False)
@click.option(
    "--happened-since",
    default=None,
    help="Instead of START and END: what the changes that happened at or after this time did (ISO 8601).",
)
@click.option(
    "--happened-until",
    default=None,
    help="Instead of START and END: what the changes that happened at or before this time did (ISO 8601).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_database_url_option
@click.pass_obj
@_reports_errors
def diff(
    options: Options,
    learner: str,
    start: str | None,
    end: str | None,
    happened_since: str | None,
    happened_until: str | None,
    as_json: bool,
) -> None:
    """Show what changed in a learner's profile between START and END.

    Each is a time (ISO 8601; naive = UTC) or a stream version (a whole number, or vN): the
    recorded clock. Or, by when changes happened, --happened-since and/or --happened-until
    instead: what the changes that happened between them did (as `history` bounds them).
    """
    happened = _time_bounds({"--happened-since": happened_since, "--happened-until": happened_until})
    by_happening = happened_since is not None or happened_until is not None
    if by_happening and (start is not None or end is not None):
        raise click.UsageError("give START and END, or --happened-since/--happened-until, not both")
    if not by_happening and (start is None or end is None):
        raise click.UsageError("give START and END (times or versions), or --happened-since/--happened-until")
    dala = _dala(options)
    if by_happening:
        dala.history_point(learner, version=0)  # an unknown learner is an error, as for two points
        result = dala.diff(
            learner, happened_since=happened["--happened-since"], happened_until=happened["--happened-until"]
        )
    else:
        assert start is not None and end is not None
        first, second = _parse_point(start, "START"), _parse_point(end, "END")
        for name, point in (("START", first), ("END", second)):
            with _given_as(version=name):
                dala.history_point(
                    learner,
                    at=point if isinstance(point, datetime) else None,
                    version=point if isinstance(point, int) else None,
                )
        result = dala.diff(learner, first, second)
    dala.record_disclosure(learner, "cli_diff")
    if as_json:
        _print_json(_json_ready(result.model_dump()))
        return
    _print_diff(result)


def _print_diff(result: Any) -> None:
    """A diff as a table at most as wide as the terminal: what changed, in which section, which
    row, and under the row, in words, what changed in it (`score 60 → 75`)."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    differ = "differs" if len(result.rows) == 1 else "differ"
    if result.happened_since is None and result.happened_until is None:
        span = f"change {result.start_version} -> {result.end_version}"
    elif result.happened_until is None:
        span = f"the changes that happened from {_minute(result.happened_since)} UTC on"
    elif result.happened_since is None:
        span = f"the changes that happened up to {_minute(result.happened_until)} UTC"
    else:
        span = (
            f"the changes that happened from {_minute(result.happened_since)} "
            f"to {_minute(result.happened_until)} UTC"
        )
    out = _console()
    out.print(f"{_safe(result.learner_id)}: {span}, {_count(len(result.rows), 'row')} {differ}")
    if result.existed_before != result.exists_after:
        out.print("profile " + ("created" if result.exists_after else "deleted") + " in between")
    if not result.rows:
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("change", no_wrap=True)
    table.add_column("section", no_wrap=True)
    # The row's key is never cut (a long one folds); what changed wraps under it.
    table.add_column("row / what changed", ratio=1)
    for row in result.rows:
        what = Text(_row_change(row), overflow="fold")
        cell = Group(Text(_safe(row.key), overflow="fold"), Padding(what, (0, 0, 0, 2), expand=False))
        table.add_row(row.change, _SECTION_NAMES.get(row.section, row.section), cell)
    _print_table(table, out)


_DIFF_VALUE_WIDTH = 60
"""A value in a diff's words is cut to this many characters (everything is in --json)."""


def _row_change(row: Any) -> str:
    """What a diff's row says in words: for a changed row each changed column, `score 60 → 75`;
    for an added or removed row, the values it has (or had) besides its key."""
    from projections.database_models import SECTIONS

    model = SECTIONS[row.section]
    keys = set(model.natural_key)

    def typed(values: dict[str, Any]) -> dict[str, Any]:
        """The row's values as the profile holds them (times as times), from their JSON form
        (as they are, should a row written long ago not pass today's checks)."""
        from pydantic import ValidationError

        try:
            return dict(model.dto.model_validate(values)) if model.dto is not None else values
        except ValidationError:
            return values

    def shown(value: Any) -> str:
        text = _cell(value) or "-"
        return text if len(text) <= _DIFF_VALUE_WIDTH else text[: _DIFF_VALUE_WIDTH - 1] + "…"

    def heading(name: str) -> str:
        return _HEADINGS.get(name, name.replace("_", " "))

    if row.change == "changed":
        before, after = typed(row.before), typed(row.after)
        return ", ".join(f"{heading(name)} {shown(before.get(name))} → {shown(after.get(name))}" for name in row.fields)
    values = typed(row.after if row.change == "added" else row.before)
    return ", ".join(
        f"{heading(name)} {shown(value)}"
        for name, value in values.items()
        if name not in keys and value not in (None, "", {}, [])
    )


# ---------------------------------------------------------------------------------------------
# A child's data: export and the record of disclosures
# ---------------------------------------------------------------------------------------------


@main.command()
@click.argument("learner")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["json", "xapi"]),
    default="json",
    show_default=True,
    help="json: everything held about the learner; xapi: xAPI 1.0.3 statements (needs DALA_XAPI_HOMEPAGE).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write it to FILE (created readable by its owner only) instead of standard output.",
)
@click.option("--json", "as_json", is_flag=True, help="Accepted as every reader takes it: an export is always JSON.")
@_database_url_option
@click.pass_obj
@_reports_errors
def export(options: Options, learner: str, export_format: str, out: Path | None, as_json: bool) -> None:
    """Export a learner's data: everything held about them (json) or their learning (xapi).

    json: the profile as the read models hold it, the full history (what, when, who, why) and
    the disclosure log. xapi: activity attempts, objective progress and badges as one JSON
    array of xAPI statements. Either way the export is recorded as a disclosure.
    """
    from dala_events.private_files import open_private

    dala = _dala(options)
    file = None if out is None else open_private(out, name="--out")  # one that cannot take it is refused first
    try:
        document = (
            dala.export_xapi(learner) if export_format == "xapi" else dala.export(learner).model_dump(mode="json")
        )
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if file is None:
            click.echo(text, nl=False)
            return
        file.write(text.encode())
        file.flush()
        os.fsync(file.fileno())
    finally:
        if file is not None:
            file.close()
    options.say(f"{export_format} export of {learner} written: {out}")


@main.command()
@click.argument("learner")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_database_url_option
@click.pass_obj
@_reports_errors
def disclosures(options: Options, learner: str, as_json: bool) -> None:
    """List who was shown a learner's data, when, what and why (exports, pages, reads)."""
    dala = _dala(options)
    found = dala.disclosures(learner)
    if not found and dala.store.stream_version(learner) == 0:
        raise LearnerNotFound(learner, f"learner {learner!r} has no recorded changes and no disclosures")
    if as_json:
        _print_json([_json_ready(disclosure.model_dump()) for disclosure in found])
        return
    from rich.table import Table

    table = Table(
        title=f"Disclosures of {learner}: {len(found)}",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        expand=True,
    )
    actors = [disclosure.actor for disclosure in found]
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("when (UTC)", no_wrap=True, width=16)
    table.add_column("what", no_wrap=True)
    table.add_column("by", no_wrap=True, overflow="ellipsis", width=min(max(map(len, actors), default=2), 18))
    table.add_column("why", no_wrap=True, overflow="ellipsis", ratio=1)
    for disclosure in found:
        when = _minute(disclosure.disclosed_at)
        table.add_row(
            str(disclosure.id), when, disclosure.what, _safe(disclosure.actor), _safe(disclosure.reason or "")
        )
    _print_table(table)
    if not found:
        options.say(f"no disclosure of {learner}'s data is recorded")


# ---------------------------------------------------------------------------------------------
# Maintenance
# ---------------------------------------------------------------------------------------------


@main.command()
@click.argument("learner")
@click.option(
    "--reason",
    "erase_reason",
    default=None,
    help="Why (required; e.g. the erasure request's reference). Recorded, readable, with the erasure.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option(
    "--vacuum-full",
    is_flag=True,
    help="PostgreSQL: rewrite the read-model tables' files (VACUUM FULL; locks them while it runs).",
)
@_shared_options(reason=False)
@click.pass_obj
@_reports_errors
def erase(options: Options, learner: str, erase_reason: str | None, yes: bool, vacuum_full: bool) -> None:
    """Erase a learner for good (right to erasure): their data key is destroyed.

    Every earlier change's content in this database becomes unreadable (history keeps who,
    when and what kind of change), the read models lose the learner, and the id cannot be used
    again. Log backups hold their data only encrypted, but a key backup taken before the erasure
    (`dala keys backup`, `dala backup --keys`) still holds their key, and with it a log backup
    brings their data back: delete those key backups, or keep key backups no longer than your
    erasure deadline. Asks for confirmation on a terminal; --yes for scripts.
    """
    from dala_events.erasure import erasure_reason

    try:
        reason = erasure_reason(erase_reason)
    except InvalidInput as error:
        raise click.UsageError(f"--reason: {error.problem}") from None
    if not yes and not _on_a_terminal():
        raise click.UsageError("not on a terminal: add --yes to erase without confirmation")
    dala = _dala(options)
    if not yes:
        made = dala.cipher.key_store.key_created_at(learner)
        since = "" if made is None else f" since {_minute(made)} UTC, when their key was made,"
        click.confirm(
            f"Erase learner {learner!r}? Their data in this database becomes unreadable for good; key backups "
            f"taken{since} still hold their key (and with it their data) until you delete them",
            abort=True,
        )
    result = dala.erase(learner, reason=reason, vacuum_full=vacuum_full)
    record = result.record
    if result.already_erased:
        options.say(f"{learner} was already erased at {_minute(record.erased_at)} UTC by {record.actor or 'unknown'}")
        if result.key_destroyed:
            options.say("its data key was still there (an interrupted erasure): destroyed now")
    else:
        changes = record.erased_up_to_version or 0
        options.say(
            f"{learner} erased at {_minute(record.erased_at)} UTC by {record.actor}: "
            f"the content of {_count(changes, 'change')} is unreadable for good in this database"
        )
    if result.key_destroyed:
        taken = (
            "taken before now"
            if result.key_created_at is None
            else f"taken from {_minute(result.key_created_at)} UTC until now"
        )
        options.say(
            f"key backups {taken} still hold {learner}'s data key, and with it any log backup brings their "
            "data back: delete them, or let them expire within your erasure deadline (see the README's Erasure)"
        )
    options.say(result.freed_space)
    if result.page_removed is not None:
        options.say(f"their rendered page was removed: {result.page_removed}")
    if not result.freed_space_complete:
        _fail(f"the erasure of {learner} is recorded and their key destroyed, but old pages remain: run it again")


@main.command()
@click.argument("learners", nargs=-1)
@click.option(
    "--checkpoint",
    "checkpoint_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="When the log is intact, write every stream's head (last version, hash, events) to FILE, signed.",
)
@click.option(
    "--against",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also compare with a checkpoint FILE: finds events cut from a stream's end and removed streams.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_database_url_option
@click.pass_obj
@_reports_errors
def verify(
    options: Options, learners: tuple[str, ...], checkpoint_out: Path | None, against: Path | None, as_json: bool
) -> None:
    """Check the event log's hash chains (all, or LEARNER's) and the database's own integrity.

    Reports each changed, inserted, deleted, reordered or moved event by learner and version.
    Exit status 0 when intact, 1 otherwise. Reads only; uses DALA_LOG_KEY or DALA_LOG_KEY_FILE.
    """
    _check_out(checkpoint_out, "--checkpoint")
    report = _dala(options, "raw").verify(learners or None, against=against, checkpoint_out=checkpoint_out)
    written = str(checkpoint_out) if checkpoint_out is not None and report.intact else None
    checkpoint = report.checkpoint
    if as_json:
        _print_json(_json_ready({**report.as_dict(), "checkpoint_written": written}))
        sys.exit(0 if report.intact else 1)
    mode = "HMAC-SHA256 with the log key" if report.key_id else "plain SHA-256 (no log key: a checksum, not a seal)"
    key = f" (key id {report.key_id})" if report.key_id else ""
    streams = f"{report.streams:,} stream{'' if report.streams == 1 else 's'}"
    _echo_wrapped(f"checked {report.events:,} events in {streams}: {mode}{key}")
    if report.engine_check is not None:
        check = report.engine_check
        status = {True: "ok", False: "FAILED", None: "not run"}[check.ok]
        detail = "" if check.detail == "ok" else f": {check.detail}"
        which = "" if check.ok is None else f" ({check.name})"
        _echo_wrapped(f"database check{which}: {status}{detail}")
    if report.encryption is not None and report.encryption.events_encrypted:
        done = report.encryption
        _echo_wrapped(
            f"events written before encryption at rest: {done.events_encrypted:,} encrypted and "
            f"{done.streams_rechained:,} streams re-chained by migration 0005 at {_minute(done.encrypted_at)} UTC"
        )
    if checkpoint is not None:
        heads = len(checkpoint.heads)
        _echo_wrapped(f"against checkpoint {checkpoint.path} of {checkpoint.created_at} ({heads:,} streams)")
    if report.problems:
        from rich.table import Table

        table = Table(show_edge=False)
        for column in ("problem", "learner", "version", "position", "detail"):
            table.add_column(column, overflow="fold")
        for problem in report.problems:
            position = "" if problem.position is None else str(problem.position)
            table.add_row(problem.kind, problem.learner_id, problem.versions, position, problem.detail)
        _print_table(table)
    if report.unlisted:
        more = ", ".join(f"{number:,} {kind}" for kind, number in report.unlisted.items())
        _echo_wrapped(f"... and {more} not listed")
    if report.hint:
        _echo_wrapped(f"note: {report.hint}")
    if report.keys is not None:
        _print_key_report(report.keys)
    for skipped in report.skipped:
        _echo_wrapped(
            f"note: the read models lack learner {skipped.learner_id} since {_minute(skipped.skipped_at)} UTC: "
            f"{skipped.why}"
        )
    if report.restore_unfinished is not None:
        _echo_wrapped(f"note: {report.restore_unfinished}")
    if report.intact:
        _echo_wrapped("intact")
        if written is not None:
            _echo_wrapped(f"checkpoint written: {written}")
    else:
        counts = ", ".join(f"{number:,} {kind}" for kind, number in report.counts().items())
        if report.keys is not None and not report.keys.ok:
            keys = len(report.keys.problems) + report.keys.unlisted
            counts = ", ".join(filter(None, [counts, f"{keys:,} key problems" if keys else "the key store failed"]))
        if report.restore_unfinished is not None:
            counts = ", ".join(filter(None, [counts, "a restore unfinished"]))
        _echo_wrapped(f"NOT INTACT: {counts or 'the database check failed'}")
        if checkpoint_out is not None:
            _echo_wrapped("no checkpoint written: the log does not verify")
    sys.exit(0 if report.intact else 1)


def _echo_wrapped(text: str) -> None:
    """A line of a report, wrapped at spaces to the terminal's width (80 when not a terminal),
    each further line indented; a path or an id is never broken."""
    import textwrap

    width = _console().width
    click.echo(textwrap.fill(text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))


def _print_key_report(keys: Any) -> None:
    """The data keys' part of `dala verify`: which key store, how many learners, what is wrong."""
    if keys.failure is not None:
        _echo_wrapped(f"data keys: NOT CHECKED: {keys.failure}")
        return
    ids = f" (id {keys.store_id}, master key {keys.master_key_id})"
    found = "ok" if keys.ok else f"{len(keys.problems) + keys.unlisted:,} problems"
    _echo_wrapped(f"data keys of {_count(keys.learners, 'learner')} in key store {keys.key_store}{ids}: {found}")
    if keys.problems:
        from rich.table import Table

        table = Table(show_edge=False)
        for column in ("problem", "learner", "version", "detail"):
            table.add_column(column, overflow="fold")
        for problem in keys.problems:
            version = "" if problem.version is None else str(problem.version)
            table.add_row(problem.kind, problem.learner_id, version, problem.detail)
        _print_table(table)
    if keys.unlisted:
        _echo_wrapped(f"... and {keys.unlisted:,} more key problems not listed")


@main.command()
@click.option(
    "--projection",
    "projections",
    multiple=True,
    help="Rebuild only this read-model table (repeatable; learner_profiles brings all). Default: all.",
)
@click.option(
    "--skip",
    "skip",
    multiple=True,
    metavar="LEARNER",
    help="Leave out this learner, whose events cannot be read (repeatable); recorded, shown by verify.",
)
@click.option(
    "--wait",
    "lock_wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="How long to wait for the swap's locks (held by an open transaction) before giving up "
    "(default: 60).",
)
@_database_url_option
@click.pass_obj
@_reports_errors
def rebuild(options: Options, projections: tuple[str, ...], skip: tuple[str, ...], lock_wait: float | None) -> None:
    """Rebuild read models from the event log into shadow tables and swap them in.

    Safe while the application writes; an interrupted rebuild leaves the live tables as they
    were and can simply be run again. Refuses, naming every one, while any learner's events
    cannot be read; --skip leaves them out on purpose. Waits for the swap's locks in short
    tries that let writers pass, says what holds them, and gives up after --wait seconds.
    """
    dala = _dala(options, "upgrade")
    with _progress_bar("rebuilding") as progress, _given_as(projection="--projection"):
        waiting = {} if lock_wait is None else {"lock_wait": lock_wait}  # the default is the library's
        result = dala.rebuild(projections or None, progress=progress, skip=skip, **waiting)
    rate = result.events / result.seconds if result.seconds else 0.0
    options.say(
        f"rebuilt {', '.join(result.projections)} from {_count(result.events, 'event')} "
        f"(log position {result.position}) in {result.seconds:.2f} s, {rate:,.0f} events/s"
    )


@main.group(invoke_without_command=True)
@click.option("--to", "revision", default="head", show_default=True, help="The revision to end at.")
@click.option("--downgrade", is_flag=True, help="Go down to --to (never past what the log's events need).")
@_database_url_option
@click.pass_context
@_reports_errors
def migrate(context: click.Context, revision: str, downgrade: bool) -> None:
    """Migrate the event log and bookkeeping tables (Alembic); read models are rebuilt instead.

    `dala migrate current` and `dala migrate history` show where the database is and which
    revisions exist.
    """
    if context.invoked_subcommand is not None:
        return
    options = context.ensure_object(Options)
    with _given_as(revision="--to"):
        reached = _dala(options, "raw-create").migrate(revision, downgrade=downgrade)
    options.say(f"event log schema at revision {reached or 'base (no tables)'}")


@migrate.command("current")
@_database_url_option
@click.pass_obj
@_reports_errors
def migrate_current(options: Options) -> None:
    """Print the revision the database's event log is at."""
    from dala_events.dialects import read_transaction
    from dala_events.schema import LOG_SCHEMA_HEAD
    from dala_events.schema import log_schema_revision as revision_of

    with read_transaction(_dala(options, "raw").engine) as connection:
        revision = revision_of(connection)
    state = "(head)" if revision == LOG_SCHEMA_HEAD else f"(head is {LOG_SCHEMA_HEAD}: run `dala migrate`)"
    click.echo(f"{revision or 'base'} {state}")


@migrate.command("history")
@click.pass_obj
@_reports_errors
def migrate_history(options: Options) -> None:
    """List the log's migrations, newest first."""
    from dala_events.schema import migration_history

    for revision in migration_history():
        click.echo(f"{revision.down_revision or 'base'} -> {revision.revision}: {revision.title}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Then back the key store up to KEYS_FILE: the pair always restores together.",
)
@_force_option
@_database_url_option
@click.pass_obj
@_reports_errors
def backup(options: Options, file: Path, keys_file: Path | None, force: bool) -> None:
    """Write a consistent, portable backup of the event log to FILE (safe while writers write).

    Every event with its stored columns, and a checksum of the whole file; `dala restore`
    puts it into an empty SQLite or PostgreSQL database. With --keys, the key store is backed
    up to KEYS_FILE right after (the log first, then the keys: every learner of the log's
    backup has its key in the key backup). An existing file is refused unless --force.
    """
    dala = _dala(options, "raw")
    result = dala.backup(file, keys=keys_file, replace=force)
    disclosures = f" and {_count(result.disclosures, 'disclosure')}" if result.disclosures else ""
    options.say(
        f"backed up {_count(result.events, 'event')}{disclosures} to {result.path} (sha256 {result.sha256[:16]}…)"
    )
    master = dala.storage.master_key_source()
    if result.keys is not None:
        _say_key_backup(options, result.keys)
        options.say(f"keep the master key ({master}) apart from both files: it is in neither")
    elif result.key_store is not None:
        options.say(
            f"its encrypted events need key store {result.key_store.describe()}: back the key store up now, after "
            f"this (`dala keys backup FILE`, or next time `dala backup FILE --keys KEYS_FILE`), and keep the master "
            f"key ({master}) apart from both"
        )
    problems = [f"left out the {row.describe()}" for row in result.left_out]
    if result.keys is not None and not result.keys.complete:
        problems.append("the key store is damaged: no new learner is accepted until it is repaired")
    if result.keys_lacking:
        names = ", ".join(repr(name) for name in sorted(result.keys_lacking)[:20])
        problems.append(f"the key backup lacks the data keys of {len(result.keys_lacking)} learners ({names})")
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        _fail(f"the backup {result.path} is incomplete (marked so in the file); run `dala verify` for the details")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-missing-keys",
    is_flag=True,
    help="Restore every event, but leave the learners whose data key the key store lacks out of the read "
    "models (named, recorded, shown by verify).",
)
@click.option(
    "--skip",
    "skip",
    multiple=True,
    metavar="LEARNER",
    help="Leave this learner out of the read models (repeatable); their events are restored.",
)
@_database_url_option
@click.pass_obj
@_reports_errors
def restore(options: Options, file: Path, skip_missing_keys: bool, skip: tuple[str, ...]) -> None:
    """Restore the event log of a backup FILE into an empty database, then rebuild the read models.

    Refuses a database whose log holds events, a truncated or altered file, and a backup whose
    learners' keys the key store lacks (unless --skip-missing-keys or --skip), writing nothing.
    A restore that stops after committing the log is finished by running it again.
    """
    dala = _dala(options, "raw-create")
    try:
        with _progress_bar("rebuilding") as progress:
            result, rebuilt = dala.restore(file, progress=progress, skip=skip, skip_missing_keys=skip_missing_keys)
    except InvalidInput as error:
        if error.field != "skip":
            raise
        raise click.UsageError(f"--skip: {error.problem}") from None
    disclosures = f" and {_count(result.disclosures, 'disclosure')}" if result.disclosures else ""
    options.say(f"restored {_count(result.events, 'event')}{disclosures} from {file}")
    options.say(f"rebuilt {', '.join(rebuilt.projections)} from {_count(rebuilt.events, 'event')}")
    report = dala.verify()
    skipped = {entry.learner_id: entry.why for entry in report.skipped}
    for learner_id in result.skipped:
        options.say(f"left out of the read models: {learner_id}: {skipped.get(learner_id, '')}")
    chain_problems = [problem for problem in report.problems if problem.learner_id not in skipped]
    key_problems = [] if report.keys is None else [p for p in report.keys.problems if p.learner_id not in skipped]
    key_failure = report.keys is not None and report.keys.failure is not None
    if chain_problems or key_problems or key_failure or report.unlisted:
        counts = ", ".join(f"{number:,} {kind}" for kind, number in report.counts().items()) or "key problems"
        _fail(f"the restored log does not verify ({counts}); run `dala verify` for the details")
    if result.skipped:
        options.say(
            f"verified: {_count(report.events, 'event')} in {_count(report.streams, 'stream')}; "
            f"{_count(len(result.skipped), 'learner')} left out of the read models, listed by `dala verify` until "
            "their keys (or events) are restored and `dala rebuild` runs"
        )
        return
    options.say(f"verified: {_count(report.events, 'event')} in {_count(report.streams, 'stream')}, intact")


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------


_PROFILE_SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Preferences", "preferences", ("category", "value", "timestamp")),
    ("Interests", "interests", ("interest_name", "timestamp")),
    ("Struggle areas", "struggles", ("struggle_description", "timestamp")),
    ("Cognitive metrics", "cognitive_metrics", ("task_name", "metric_details", "timestamp")),
    ("Learning objectives", "lo_progress", ("lo_id", "status", "score", "started_at", "completed_at")),
    ("Badges", "badges", ("badge_id", "badge_name", "earned_date", "details")),
    ("Activity attempts", "activity_attempts", ("lo_id", "activity_id", "activity_type", "score", "attempt_timestamp")),
)
_SECTION_NAMES = {section: title.lower() for title, section, _columns in _PROFILE_SECTIONS}
_SUMMARISED = frozenset({"metric_details", "details"})
"""Columns shown cut to the width left (everything is in --json); the others are never cut."""
_HEADINGS = {"attempt_timestamp": "when", "activity_type": "type", "struggle_description": "struggle area"}
RECENT_ATTEMPTS = 10


def _print_profile(data: Any, point: Any, happened_by: datetime | None = None) -> None:
    from rich.table import Table

    out = _console()
    if happened_by is not None:
        click.echo(f"Learner {data.learner_id} as the changes that had happened by {_minute(happened_by)} UTC make it")
    elif point is None:
        click.echo(
            f"Learner {data.learner_id}: created {_minute(data.created_at)}, "
            f"updated {_minute(data.last_updated_at)} UTC"
        )
        click.echo("(times are when changes happened; `dala history` shows when recorded)")
    else:
        click.echo(
            f"Learner {data.learner_id} as of change {point.version} of {point.last_version} "
            f"(recorded {_minute(point.recorded_at)} UTC)"
        )
    for title, section, columns in _PROFILE_SECTIONS:
        rows = getattr(data, section)
        if section == "activity_attempts" and len(rows) > RECENT_ATTEMPTS:
            title = f"{title} (the last {RECENT_ATTEMPTS} of {len(rows)})"
            rows = rows[-RECENT_ATTEMPTS:]
        cells = [[_cell(getattr(row, column)) for column in columns] for row in rows]
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            heading = _HEADINGS.get(column, column.replace("_", " "))
            if column in _SUMMARISED:  # takes the width the others leave, cut with …
                table.add_column(heading, overflow="ellipsis", no_wrap=True, ratio=1, min_width=8)
            else:  # identifiers, names and times are never cut (folded only when nothing else fits)
                table.add_column(heading, overflow="fold")
        for line in cells:
            table.add_row(*line)
        if not rows:
            table.add_row(*(["-"] * len(columns)))
        _print_table(table, out)


class BadValue(click.ClickException):
    """A value on the command line that cannot be used: one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _parse_time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadValue(f"{option}: not an ISO 8601 time: {value!r} (e.g. 2026-03-03 or 2026-03-03T14:00)") from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise BadValue(f"{option}: {value!r} lies outside the years 1 to 9999 in UTC") from None


def _time_bounds(given: dict[str, str | None]) -> dict[str, datetime | None]:
    """Options bounding a clock (`--since`, `--until`, ...), parsed; a lower bound later than its
    upper one (`--since` after `--until`) is a wrong command line."""
    bounds = {name: None if value is None else _parse_time(value, name) for name, value in given.items()}
    for low_name, high_name in (("--since", "--until"), ("--happened-since", "--happened-until")):
        low, high = bounds.get(low_name), bounds.get(high_name)
        if low is not None and high is not None and low > high:
            raise BadValue(f"{low_name}: it is later than {high_name}; nothing can lie between them")
    return bounds


def _parse_point(value: str, name: str) -> datetime | int:
    text = value.strip()
    digits = text[1:] if text[:1] in ("v", "V") else text
    if digits.isdigit():
        return int(digits)
    return _parse_time(text, name)


def _json_time(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z: the one time format of every --json output."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return _json_time(value)
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    return value


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _event_json(event: Any) -> dict[str, Any]:
    return {
        "position": event.position,
        "event_id": event.event_id,
        "learner_id": event.learner_id,
        "version": event.version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": _json_time(event.occurred_at),
        "recorded_at": _json_time(event.recorded_at),
        "payload": _json_ready(event.event.model_dump(mode="python", exclude={"event_type"})),
        "metadata": dict(event.metadata),
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _minute(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar with rate and ETA on a terminal (stderr); nothing otherwise."""
    console = _console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=max(total, done), rate=f"{speed:,.0f} events/s" if speed else "")

        yield update


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return _safe(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))
    if isinstance(value, datetime):
        return _minute(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return _safe(str(value))


def _safe(text: str) -> str:
    """`text` with every control or format character (an escape sequence in a learner's string,
    say) shown as its code, `\\x1b`, so that nothing stored can drive the reader's terminal."""
    if text.isprintable():
        return text
    import unicodedata

    return "".join(
        c
        if c in "\n" or unicodedata.category(c)[0] != "C"
        else f"\\x{ord(c):02x}"
        if ord(c) < 256
        else f"\\u{ord(c):04x}"
        for c in text
    )


if __name__ == "__main__":  # pragma: no cover
    main()
