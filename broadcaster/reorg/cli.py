"""``broadcaster areas reorganise FILE`` and ``broadcaster areas undo ID`` (mounted by
`broadcaster.cli`): a reorganisation decision given as a spreadsheet (CSV, columns
`service.CSV_COLUMNS`), previewed, then applied with ``--apply``."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from broadcaster import db
from broadcaster.console import console, err, load_settings
from broadcaster.reorg import service
from kernel.changes import Actor, commit_change
from kernel.errors import DomainError
from stations.models import ReorgStatus

__all__ = ["areas_app"]

areas_app = typer.Typer(help="Areas: administrative reorganisations", no_args_is_help=True)
ACTOR = Actor.system("cli")


def _print_errors(exc: DomainError) -> typer.Exit:
    errors = exc.errors if isinstance(exc, service.ReorgRefused) else [(exc.message, "")]
    table = Table("error", "lỗi", title=f"{len(errors)} error(s)")
    for message, message_vi in errors:
        table.add_row(escape(message), escape(message_vi))
    err.print(table)
    err.print("[red]Nothing was changed.[/red]")
    return typer.Exit(1)


def _print_move_reach(effect: dict[str, Any]) -> None:
    """The rules and accounts whose reach the plan's hamlet moves change (`service.MoveReach`),
    or a sentence that none does."""
    rules, accounts = effect.get("rule_reach", []), effect.get("account_scopes", [])
    if not rules and not accounts:
        console.print(
            "Moving the hamlets changes no schedule rule's reach and no account's scope "
            "(không lịch phát, tài khoản nào thay đổi phạm vi)."
        )
        return
    if rules:
        table = Table(
            "rule",
            "programme",
            "no longer reaches",
            "newly reaches",
            title="Lịch phát thay đổi phạm vi (Không còn phát tới / Sẽ phát thêm tới)",
        )
        for rule in rules:
            table.add_row(
                escape(f"{rule['title']} (#{rule['id']})"),
                escape(rule["programme"]),
                escape(", ".join(rule["lost"])),
                escape(", ".join(rule["gained"])),
            )
        console.print(table)
    else:
        console.print("No schedule rule's reach changes (không lịch phát nào thay đổi phạm vi).")
    if accounts:
        table = Table(
            "account",
            "role",
            "no longer in scope",
            "newly in scope",
            title="Tài khoản thay đổi phạm vi quản lý",
        )
        for account in accounts:
            table.add_row(
                escape(account["username"]),
                escape(account["role"]),
                escape(", ".join(account["lost"])),
                escape(", ".join(account["gained"])),
            )
        console.print(table)
    else:
        console.print("No account's scope changes (không tài khoản nào thay đổi phạm vi quản lý).")


@contextlib.contextmanager
def _session() -> Iterator[Session]:
    """A session on the migrated database; the engine is disposed afterwards."""
    engine = db.make_engine(load_settings().database_url)
    try:
        with console.status("Applying database migrations…"):
            db.upgrade(engine)
        with db.make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


@areas_app.command("reorganise")
def reorganise(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    effective: Annotated[str, typer.Option(help="effective date, YYYY-MM-DD")],
    name: Annotated[str, typer.Option(help="the decision's name")] = "Sắp xếp đơn vị hành chính",
    apply: Annotated[bool, typer.Option("--apply", help="apply (default: preview only)")] = False,
) -> None:
    """Preview (or with --apply, apply) the decision in FILE: every error listed, or what
    moves (stations, groups, accounts' scopes, rules, owned objects, pending approvals;
    for hamlets moved, the rules and accounts whose stations change)."""
    try:
        day = dt.date.fromisoformat(effective)
    except ValueError as exc:
        err.print(f"[red]Invalid date {escape(effective)!s}[/red]")
        raise typer.Exit(2) from exc
    text = file.read_text(encoding="utf-8-sig")
    with _session() as session:
        try:
            plan = service.plan_from_csv(text, name=name, effective=day)
            if not apply:
                effect = service.preview(session, plan, by=ACTOR.name or "cli")
                session.rollback()
            else:
                today = dt.datetime.now(load_settings().tz).date()
                record, effect = service.submit(session, plan, by=ACTOR.name or "cli", today=today)
                now = record.status is ReorgStatus.APPLIED
                commit_change(
                    session,
                    ACTOR,
                    "area.reorganise" if now else "area.reorganise.schedule",
                    "area_reorganisation",
                    [str(record.id)],
                    after=effect,
                    plan=now,
                )
        except DomainError as exc:
            session.rollback()
            raise _print_errors(exc) from exc
    console.print_json(json.dumps(effect, ensure_ascii=False))
    if any(step.kind == "move" for step in plan.steps):
        _print_move_reach(effect)
    verb = "Preview only (nothing changed; add --apply)"
    if apply:
        verb = (
            "Applied"
            if day <= dt.datetime.now(load_settings().tz).date()
            else (f"Scheduled for {day} (the worker applies it then; 'areas undo' cancels it)")
        )
    console.print(f"[green]{verb}:[/green] {len(effect['stations'])} stations change unit.")


@areas_app.command("undo")
def undo(reorganisation: Annotated[int, typer.Argument(help="the reorganisation's id")]) -> None:
    """Undo an applied reorganisation, or cancel a scheduled one (only before its
    effective date)."""
    settings = load_settings()
    with _session() as session:
        try:
            today = dt.datetime.now(settings.tz).date()
            service.undo(session, reorganisation, today=today)
        except DomainError as exc:
            session.rollback()
            raise _print_errors(exc) from exc
        commit_change(
            session, ACTOR, "area.reorganise.undo", "area_reorganisation", [str(reorganisation)]
        )
    console.print(f"[green]Reorganisation {reorganisation} undone.[/green]")
