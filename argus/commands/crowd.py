"""`argus crowd ...`: init-db, serve, batch create|status|pause|resume|close|expire, export, workers,
flags.

Configuration comes from the same layers as the server (defaults -> `ARGUS_CONFIG` file ->
`ARGUS_*` environment); `--database-url` is a shortcut for `ARGUS_DATABASE_URL`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import click

from argus.commands.shared import cli_errors, format_table, list_option

DB_OPTION = click.option("--database-url", envvar="ARGUS_DATABASE_URL", default=None,
                         help="SQLAlchemy URL (default: SQLite in the instance folder). Env: ARGUS_DATABASE_URL.")


def _app(database_url: str | None, auto_init: bool = True):
    from crowd.app import create_app

    overrides = {"AUTO_INIT_DB": auto_init}
    if database_url:
        overrides["DATABASE_URL"] = database_url
    return create_app(overrides)


@click.group()
def crowd():
    """Run the crowd task server and manage batches."""


@crowd.command("init-db")
@DB_OPTION
def init_db(database_url):
    """Create the database schema, or upgrade it to this version (safe to re-run)."""
    from crowd.db import get_database, schema_version, upgrade

    try:  # the MTurk adapter's tables live on the same Base
        import crowd.providers.mturk_models  # noqa: F401
    except ImportError:
        pass
    app = _app(database_url, auto_init=False)
    engine = get_database(app).engine
    before = schema_version(engine)
    after = upgrade(engine)
    url = engine.url.render_as_string(hide_password=True)
    click.echo(f"database {url}: schema version {before if before is not None else 'none'} -> {after}")


def _create_batch(app, sheets, kinds, images, classes, name, redundancy, gold_rate, tasks_per_visit, reward_cents,
                  lease_seconds, gold_file, exclude, max_arguments, max_marks, limit, practice_file=None,
                  practice_pass=None, show_feature_names=False, allow_same_image=False, order_seed=None,
                  min_seconds=()):
    from crowd import service as S
    from crowd.db import get_database

    gold = None
    if gold_file:
        with open(gold_file, encoding="utf-8") as fh:
            gold = json.load(fh)
    options = {"show_feature_names": True} if show_feature_names else {}
    if practice_file:
        with open(practice_file, encoding="utf-8") as fh:
            options["practice"] = json.load(fh)
    if practice_pass is not None:
        options["practice_pass"] = practice_pass
    if allow_same_image:
        options["allow_same_image"] = True
    if min_seconds:
        options["speed_min_seconds"] = _min_seconds(min_seconds)
    if order_seed is not None:
        options["order_seed"] = int(order_seed)
    params = dict(redundancy=redundancy, gold_rate=gold_rate, tasks_per_visit=tasks_per_visit,
                  reward_cents=reward_cents, lease_seconds=lease_seconds, gold=gold, exclude_batches=list(exclude),
                  options=options)
    with app.app_context(), get_database(app).transaction() as session:
        if images:
            with open(images, encoding="utf-8") as fh:
                items = [line.strip() for line in fh if line.strip()]
            batch = S.create_label_batch(session, items, list(classes), name=name, **params)
        else:
            batch = S.create_batch_from_sheets(session, sheets, kinds=list(kinds) or ["rate_arguments"], name=name,
                                               classes=list(classes) or None, max_arguments=max_arguments,
                                               max_marks=max_marks, limit=limit,
                                               **params)
        session.flush()
        return S.batch_status(session, batch.id)


def _min_seconds(items) -> dict[str, float]:
    out = {}
    for item in items:
        kind, sep, seconds = item.partition("=")
        try:
            out[kind.strip()] = float(seconds)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"expected KIND=SECONDS, got {item!r}", param_hint="--min-seconds")
    return out


BATCH_OPTIONS = [
    list_option("--kind", "kinds", names="crowd.judgments:KINDS",
                help="Task kind (repeat, or comma-separate, for a mixed batch). Default: rate_arguments."),
    click.option("--redundancy", "-R", default=3, show_default=True, help="Judgments per task, from distinct workers."),
    click.option("--gold-rate", default=0.0, show_default=True, help="Share of gold tasks mixed into each visit."),
    click.option("--gold", "gold_file", type=click.Path(exists=True, dir_okay=False),
                 help='JSON list of gold answers: [{"sheet": "s1", "kind": "label", "answer": {"label": "cat"}}].'),
    click.option("--tasks-per-visit", "-k", default=5, show_default=True),
    click.option("--reward-cents", default=0, show_default=True, help="Pay per visit (cents)."),
    click.option("--lease-seconds", default=900, show_default=True),
    list_option("--exclude", item=click.INT, help="Batch ids whose workers may not take this one (repeat or comma-separate)."),
    click.option("--name", default=None),
    click.option("--max-arguments", default=3, show_default=True),
    click.option("--max-marks", default=5, show_default=True),
    click.option("--limit", type=int, default=None, help="Use only the first N sheets."),
    click.option("--practice", "practice_file", type=click.Path(exists=True, dir_okay=False),
                 help='JSON list of practice items: [{"sheet": "s1", "kind": "label", "answer": {"label": "cat"}, '
                      '"explain": "why"}] (their sheets are held out of the tasks).'),
    click.option("--practice-pass", type=float, default=None,
                 help="Share of practice items right at the first try needed to go on (default 0.5)."),
    click.option("--show-feature-names", is_flag=True,
                 help="Show the model's feature names in rate_arguments (blind by default)."),
    click.option("--allow-same-image", is_flag=True,
                 help="Let one worker get several tasks of the same image (by default one per image and batch)."),
    click.option("--order-seed", type=int, default=None,
                 help="Seed of the per-worker random task order (default: random, kept with the batch)."),
    list_option("--min-seconds", help="KIND=SECONDS: minimum plausible answer time of a kind (repeat or "
                                      "comma-separate); default 0.2 x the batch's median (docs/crowd.md)."),
]


def batch_options(fn):
    for opt in reversed(BATCH_OPTIONS):
        fn = opt(fn)
    return fn


@crowd.group()
def batch():
    """Create batches and watch their progress."""


@batch.command("create")
@click.argument("sheets", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--images", type=click.Path(exists=True, dir_okay=False),
              help="Text file with one image path per line: makes a label batch (needs --classes).")
@list_option("--classes", help="Label choices (repeat or comma-separate): needed with --images; with SHEETS the "
                                "model's class list in summary.json is the default, and given choices must cover it.")
@batch_options
@DB_OPTION
@cli_errors
def batch_create(sheets, images, classes, kinds, redundancy, gold_rate, gold_file, tasks_per_visit, reward_cents,
                 lease_seconds, exclude, name, max_arguments, max_marks, limit, practice_file, practice_pass,
                 show_feature_names, allow_same_image, order_seed, min_seconds, database_url):
    """Create a batch from a SHEETS folder (or from --images + --classes)."""
    if not sheets and not images:
        raise click.UsageError("give a SHEETS folder or --images FILE")
    app = _app(database_url)
    status = _create_batch(app, sheets, kinds, images, classes, name, redundancy, gold_rate, tasks_per_visit,
                           reward_cents, lease_seconds, gold_file, exclude, max_arguments, max_marks, limit,
                           practice_file, practice_pass, show_feature_names, allow_same_image, order_seed, min_seconds)
    click.echo(f"batch {status['id']} created: {status['tasks']} tasks {status['tasks_by_kind']}, "
               f"{status['gold_tasks']} gold, R={status['redundancy']}")
    click.echo(f"worker link: /w/{status['id']}?worker=<id>   (MTurk: /w/{status['id']} as ExternalQuestion URL)")


@batch.command("status")
@click.argument("batch_id", required=False, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@DB_OPTION
@cli_errors
def batch_status(batch_id, as_json, database_url):
    """Progress of one batch (or all)."""
    from crowd import service as S
    from crowd.db import get_database

    app = _app(database_url)
    with app.app_context(), get_database(app).reading() as session:
        rows = [S.batch_status(session, batch_id)] if batch_id else S.list_batches(session)
        if as_json:
            click.echo(json.dumps(rows if batch_id is None else rows[0], indent=2))
            return
        for r in rows:
            r["kinds"] = ",".join(r["kinds"])
            r["judgments"] = f"{r['judgments']}/{r['judgments_needed']}"
            r["progress"] = f"{100 * r['progress']:.1f}%"
        click.echo(format_table(rows, ["id", "name", "kinds", "status", "tasks", "tasks_complete", "judgments", "progress",
                                 "active_leases", "workers"]))


def _batch_action(action: str, doc: str):
    @click.argument("batch_id", type=int)
    @DB_OPTION
    @cli_errors
    def command(batch_id, database_url):
        from crowd import service as S
        from crowd.db import get_database

        app = _app(database_url)
        with app.app_context(), get_database(app).transaction() as session:
            done = S.change_batch(session, batch_id, action)
        ended = f"; {done['leases_ended']} running leases ended" if action == "expire" else ""
        click.echo(f"batch {batch_id}: {done['before']} -> {done['after']}{ended}")

    command.__doc__ = doc
    batch.command(action)(command)


_batch_action("pause", "Pause BATCH_ID: no new visits or tasks until `resume`; running leases may still submit.")
_batch_action("resume", "Resume a paused BATCH_ID.")
_batch_action("close", "Close BATCH_ID for good: no new visits or tasks; running leases may still submit.")
_batch_action("expire", "Expire BATCH_ID: close it and end every running lease now (tasks go back to the queue).")


@crowd.command("export")
@click.argument("batch_id", type=int, required=False)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output file (.csv or .parquet).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
              help="Default: from the file extension.")
@click.option("--hash-workers", is_flag=True, help="Replace worker ids by salted SHA-256 (ARGUS_EXPORT_SALT).")
@DB_OPTION
@cli_errors
def export(batch_id, out, fmt, hash_workers, database_url):
    """Export judgments (one row per answer; all batches when BATCH_ID is left out)."""
    from training.progress import progress_bar as tqdm

    from crowd import service as S
    from crowd.db import get_database
    from crowd.judgments import write_judgments

    app = _app(database_url)
    salt = S.export_salt(app.config) if hash_workers else None
    with app.app_context(), get_database(app).reading() as session:
        if batch_id is not None:
            S.get_batch(session, batch_id)
        rows = tqdm(S.iter_judgment_rows(session, batch_id, hash_salt=salt), desc="export", unit="row",
                    disable=not sys.stderr.isatty())
        n = write_judgments(out, rows, fmt)
    click.echo(f"wrote {n} rows to {out}")


@crowd.command("links")
@click.argument("batch_id", type=int)
@list_option("--workers", "workers_", help="Worker ids to make a link for (repeat or comma-separate).")
@click.option("--count", type=click.IntRange(1, 10000), default=None, help="Make N links with random worker ids.")
@click.option("--base-url", default="http://127.0.0.1:5000", show_default=True,
              help="The server's public address, put in front of each link.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Also write worker,url as CSV.")
@DB_OPTION
@cli_errors
def links(batch_id, workers_, count, base_url, out, database_url):
    """Researcher-signed entry links of a batch, one per worker: whoever opens a link works as
    that worker, and nobody can make one without the server's SECRET_KEY (links without one are
    anonymous). Give --workers a,b or --count N."""
    import csv

    from crowd import service as S
    from crowd.db import get_database
    from crowd.tokens import worker_links

    if bool(workers_) == bool(count):
        raise click.UsageError("give either --workers or --count")
    app = _app(database_url)
    with app.app_context():
        with get_database(app).reading() as session:
            S.get_batch(session, batch_id)
        try:
            rows = worker_links(batch_id, list(workers_) if workers_ else None, count, base_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--workers") from None
    if out:
        with open(out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["worker", "url"])
            writer.writerows([r["worker"], r["url"]] for r in rows)
    click.echo(format_table(rows, ["worker", "url"]))


@crowd.command("workers")
@click.argument("batch_id", type=int)
@DB_OPTION
@cli_errors
def workers(batch_id, database_url):
    """Per-worker stats of a batch (tasks, median time, gold accuracy, agreement)."""
    from crowd import service as S
    from crowd.db import get_database

    app = _app(database_url)
    with app.app_context(), get_database(app).reading() as session:
        rows = S.worker_stats(session, batch_id)
    click.echo(format_table(rows, ["id", "worker", "status", "tasks", "median_duration_s", "too_fast", "flag_fast",
                             "gold_accuracy", "gold_answers", "agreement_with_majority"]))


@crowd.command("flags")
@click.argument("batch_id", type=int)
@click.option("--record", is_flag=True, help="Store the flags for the dashboard's flags page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@DB_OPTION
@cli_errors
def flags(batch_id, record, as_json, database_url):
    """Worker quality of BATCH_ID from the analysis (`analysis.quality`: gold posterior, consensus
    kappa, speed; flags only on evidence, each with its reason)."""
    import math

    from analysis.quality import worker_flags, worker_quality
    from argus.pipelines.mturk_review import batch_frame
    from crowd import dashboard as D
    from crowd import service as S
    from crowd.db import get_database

    app = _app(database_url)
    db = get_database(app)
    with db.reading() as session:
        S.get_batch(session, batch_id)
    frame = batch_frame(db, batch_id)
    if frame.empty:
        raise click.ClickException(f"batch {batch_id} has no judgments yet")
    table = worker_flags(worker_quality(frame))
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
             for k, v in r.items()} for r in table.to_dict("records")]
    if record:
        with db.transaction() as session:
            D.record_analysis_flags(session, batch_id, rows, source="analysis.quality.worker_quality")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(format_table(rows, ["worker", "action", "n_answers", "gold_n", "gold_accuracy", "min_kappa",
                                       "reasons"]))
    if record:
        click.echo(f"recorded for the dashboard: /admin/batches/{batch_id}/flags")


@crowd.command("serve")
@click.argument("sheets", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--workers", "n_workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=64, show_default=True,
              help="Request threads per process (gthread worker: idle or slow clients do not block it).")
@click.option("--dev", is_flag=True, help="Flask's single-process development server instead of gunicorn.")
@batch_options
@DB_OPTION
@cli_errors
def serve(sheets, host, port, n_workers, threads, dev, kinds, redundancy, gold_rate, gold_file, tasks_per_visit, reward_cents,
          lease_seconds, exclude, name, max_arguments, max_marks, limit, practice_file, practice_pass,
          show_feature_names, allow_same_image, order_seed, min_seconds, database_url):
    """Serve the task server; with SHEETS, first create a batch from that folder (unless one exists)."""
    from crowd.db import get_database
    from crowd.models import Batch

    if database_url:
        os.environ["ARGUS_DATABASE_URL"] = database_url
    app = _app(database_url)
    if sheets:
        from pathlib import Path

        from sqlalchemy import select

        with app.app_context(), get_database(app).reading() as session:
            existing = session.scalar(select(Batch.id).where(Batch.media_root == str(Path(sheets).resolve()))
                                      .order_by(Batch.id.desc()).limit(1))
        if existing is None:
            status = _create_batch(app, sheets, kinds, None, (), name, redundancy, gold_rate, tasks_per_visit,
                                   reward_cents, lease_seconds, gold_file, exclude, max_arguments, max_marks, limit,
                                   practice_file, practice_pass, show_feature_names, allow_same_image, order_seed,
                                   min_seconds)
            existing = status["id"]
            click.echo(f"created batch {existing} from {sheets}")
        click.echo(f"open http://{host}:{port}/w/{existing}?worker=YOUR_ID to do tasks")
    click.echo(f"admin dashboard: http://{host}:{port}/admin/ (set ARGUS_ADMIN_PASSWORD)")
    if dev:
        app.run(host=host, port=port, debug=False)
        return
    from crowd.serving import gunicorn_command

    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")
    if gunicorn is None:
        raise click.ClickException("gunicorn is not installed; use --dev or pip install gunicorn")
    cmd = gunicorn_command(f"{host}:{port}", workers=n_workers, threads=threads, gunicorn=[gunicorn])
    click.echo(" ".join(cmd))
    sys.stdout.flush()
    os.execv(gunicorn, cmd)  # gunicorn replaces this process, so signals reach it directly
