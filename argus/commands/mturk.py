"""`argus mturk ...`: launch and manage crowd batches on Amazon Mechanical Turk.

Sandbox by default; `--live` asks for a typed confirmation before anything that changes MTurk.
Spending commands (`launch`, `review`, `bonus`) are dry runs that print the plan and its cost
unless given `--execute`. Every command is safe to re-run after a failure.
"""

from __future__ import annotations

import csv
import json
import re

import click

from argus.commands.shared import cli_errors, format_table, list_option

LIVE_WORD = "LIVE"


def _seconds(value: str, field: str) -> int:
    """'90' / '90s' / '30m' / '2h' / '3d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
    if not m:
        raise click.BadParameter(f"{value!r} is not a duration like 3600, 30m, 2h or 3d", param_hint=field)
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _table(rows, headers=None) -> str:
    return format_table(rows, headers, float_format="{:.2f}")  # money and gold accuracies: 2 decimals


class Ctx:
    """Lazily built database + MTurk service for one CLI invocation."""

    def __init__(self, live: bool, endpoint_url: str | None, db_url: str | None, profile: str | None,
                 retry_mode: str, max_attempts: int, progress: bool):
        self.live, self.endpoint_url, self.db_url, self.profile = live, endpoint_url, db_url, profile
        self.retry_mode, self.max_attempts, self.progress = retry_mode, max_attempts, progress
        self._service = None
        self._confirmed = False

    @property
    def environment(self) -> str:
        return "live" if self.live else "sandbox"

    def confirm_live(self, what: str) -> None:
        """Typed confirmation before changing anything on production MTurk."""
        if not self.live or self._confirmed:
            return
        click.secho(f"LIVE MTurk: {what} uses real workers and real money.", fg="red", bold=True, err=True)
        typed = click.prompt(f"Type {LIVE_WORD} to continue", default="", show_default=False, err=True)
        if typed.strip() != LIVE_WORD:
            raise click.ClickException("not confirmed; nothing was done")
        self._confirmed = True

    def client(self):
        from crowd.providers.mturk_client import MTurkClient

        return MTurkClient.connect(self.environment, endpoint_url=self.endpoint_url, profile=self.profile,
                                   retry_mode=self.retry_mode, max_attempts=self.max_attempts)

    def database(self):
        from crowd.app import create_app
        from crowd.db import get_database

        app = create_app({"DATABASE_URL": self.db_url} if self.db_url else None)
        return get_database(app)

    @property
    def service(self):
        if self._service is None:
            from crowd.providers.mturk_service import MTurkService

            self._service = MTurkService(self.database(), self.client(), progress=self.progress)
        return self._service


def pass_ctx(fn):
    """Pass the invocation's Ctx; add `--sandbox/--live` to the subcommand too, so both
    `argus mturk --live launch ...` and `argus mturk launch --live ...` work."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, env_sandbox=None, **kwargs):
        c = click.get_current_context().find_object(Ctx)
        if env_sandbox is not None:
            c.live = not env_sandbox
        return fn(c, *args, **kwargs)

    return click.option("--sandbox/--live", "env_sandbox", default=None,
                        help="MTurk environment (overrides the group option).")(wrapper)


@click.group("mturk")
@click.option("--sandbox/--live", "sandbox", default=True, show_default=True,
              help="MTurk environment. --live needs a typed confirmation before changing anything.")
@click.option("--database-url", "db_url", envvar="ARGUS_DATABASE_URL", default=None,
              help="Argus database URL (default: the crowd server's configured database).")
@click.option("--profile", default=None, help="AWS profile (credentials otherwise from the standard AWS sources).")
@click.option("--retry-mode", type=click.Choice(["standard", "adaptive"]), default="standard", show_default=True,
              help="botocore retry mode; adaptive also slows the client down when MTurk throttles.")
@click.option("--max-attempts", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Attempts per MTurk call, first try included.")
@click.option("--endpoint-url", envvar="ARGUS_MTURK_ENDPOINT_URL", default=None, hidden=True,
              help="Override the MTurk endpoint (offline tests).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars on long operations.")
@click.pass_context
def mturk(ctx, sandbox, db_url, profile, retry_mode, max_attempts, endpoint_url, progress):
    """Launch and manage batches on Amazon Mechanical Turk (sandbox unless --live)."""
    ctx.obj = Ctx(not sandbox, endpoint_url, db_url, profile, retry_mode, max_attempts, progress)


@mturk.command()
@pass_ctx
@cli_errors
def balance(c: Ctx):
    """Show the account's available balance."""
    click.echo(_table([(c.environment, f"${c.client().balance()}")], ["environment", "available balance"]))


@mturk.command()
@click.argument("batch_id", type=int)
@click.option("--server-url", help="Public HTTPS address of the Argus server; the HITs open <server-url>/w/<batch>.")
@click.option("--entry-url", help="Full entry URL instead of --server-url.")
@click.option("--title", required=True, help="HIT title workers see.")
@click.option("--description", required=True, help="HIT description workers see.")
@click.option("--keywords", default="image, rating, research", show_default=True)
@click.option("--reward", default=None, help="USD per assignment (default: the batch's pay).")
@click.option("--assignments", type=click.IntRange(1), default=None,
              help="Worker visits in total (default: enough for R judgments of every task).")
@click.option("--per-hit", type=click.IntRange(1, 100), default=9, show_default=True,
              help="Assignments per HIT; <= 9 keeps MTurk's fee at 20% instead of 40%.")
@click.option("--duration", default="1h", show_default=True, help="Time a worker has per assignment.")
@click.option("--lifetime", default="7d", show_default=True, help="How long the HITs stay available.")
@click.option("--auto-approve", default="3d", show_default=True, help="Delay before MTurk approves on its own.")
@click.option("--min-approval", type=click.IntRange(0, 100), default=95, show_default=True,
              help="Minimum percent of a worker's assignments approved.")
@click.option("--min-approved-hits", type=click.IntRange(0), default=None,
              help="Minimum number of the worker's approved HITs (NumberHITsApproved).")
@click.option("--masters", is_flag=True, help="Only Masters workers (MTurk adds 5% to its fee).")
@click.option("--allow-excluded", is_flag=True,
              help="Do not hide the HITs from workers an earlier review excluded for low-quality work.")
@list_option("--locale", "locales", help="Allowed worker locale (US, US-CA, ...); repeatable.")
@click.option("--study", default=None, help="Retake-blocking scope: workers of any batch of this study see its "
                                            "HITs only once (default: batch-<id>).")
@list_option("--exclude-study", "exclude_studies", help="Also hide from workers of this study.")
@click.option("--qual-test", type=click.Path(exists=True, dir_okay=False), help="QuestionForm XML of a qualification test.")
@click.option("--qual-answer-key", type=click.Path(exists=True, dir_okay=False), help="AnswerKey XML for --qual-test.")
@click.option("--qual-min-score", type=int, default=1, show_default=True)
@click.option("--planned-bonuses", default="0", show_default=True, help="USD set aside for bonuses (in the estimate).")
@click.option("--planned-bonus-count", type=click.IntRange(1), default=None,
              help="How many bonus payments that budget is split into (default: one per assignment); MTurk "
                   "takes at least $0.01 per payment.")
@click.option("--max-budget", default=None, help="Refuse to launch if the estimate is above this (USD).")
@click.option("--round", "round_", type=click.IntRange(1), default=1, show_default=True,
              help="Launch another set of HITs for the same batch.")
@click.option("--frame-height", type=click.IntRange(0, 5000), default=0, show_default=True)
@click.option("--execute", is_flag=True, help="Really create the HITs (otherwise: dry run with the cost estimate).")
@pass_ctx
@cli_errors
def launch(c: Ctx, batch_id, server_url, entry_url, title, description, keywords, reward, assignments, per_hit,
           duration, lifetime, auto_approve, min_approval, min_approved_hits, masters, allow_excluded, locales, study,
           exclude_studies, qual_test, qual_answer_key, qual_min_score, planned_bonuses, planned_bonus_count,
           max_budget, round_, frame_height, execute):
    """Create the HIT type and HITs of BATCH_ID (dry run unless --execute)."""
    from crowd.providers.mturk_service import LaunchSettings

    if bool(server_url) == bool(entry_url):
        raise click.UsageError("give exactly one of --server-url and --entry-url")
    url = entry_url or f"{server_url.rstrip('/')}/w/{batch_id}"
    settings = LaunchSettings(
        entry_url=url, title=title, description=description, keywords=keywords, reward=reward,
        assignments=assignments, per_hit=per_hit, assignment_duration_s=_seconds(duration, "--duration"),
        lifetime_s=_seconds(lifetime, "--lifetime"), auto_approval_delay_s=_seconds(auto_approve, "--auto-approve"),
        min_approval_rate=min_approval, min_approved_hits=min_approved_hits, masters=masters,
        exclude_low_quality=not allow_excluded, locales=tuple(locales), study=study,
        exclude_studies=tuple(exclude_studies),
        qualification_test=open(qual_test).read() if qual_test else None,
        qualification_answer_key=open(qual_answer_key).read() if qual_answer_key else None,
        qualification_min_score=qual_min_score, planned_bonuses=planned_bonuses,
        planned_bonus_count=planned_bonus_count, frame_height=frame_height,
        round=round_, allow_http=bool(c.endpoint_url),  # plain http only against a local fake endpoint
    )
    if execute:
        c.confirm_live(f"launching batch {batch_id}")
    result = c.service.launch(batch_id, settings, dry_run=not execute, max_budget=max_budget)
    click.echo(f"Cost estimate ({c.environment}), entry URL {url}")
    click.echo(_table(result.estimate.rows(), ["item", "amount"]))
    if result.dry_run:
        click.echo("\nDry run: nothing was created. Add --execute to create the HITs.")
        return
    click.echo(f"\nHIT type {result.hit_type_id}: {result.created} HITs created, {result.recovered} recovered "
               f"from earlier tries, {len(result.hits) - result.created - result.recovered} already there.")
    click.echo(_table(result.hits, ["chunk", "hit_id", "max_assignments", "new"]))
    if c.environment == "sandbox":
        click.echo("Sandbox workers find them at https://workersandbox.mturk.com/requesters (search your title).")


@mturk.command()
@click.argument("batch_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
@cli_errors
def status(c: Ctx, batch_id, as_json):
    """Local view of BATCH_ID's HITs, assignments and payments (run `sync` first)."""
    st = c.service.status(batch_id)
    if as_json:
        click.echo(json.dumps(st, default=str))
        return
    click.echo(f"Batch {batch_id} on MTurk {st['environment']}")
    click.echo(_table(st["hits"], ["round", "chunk", "hit_id", "state", "mturk_status", "max_assignments", "submitted"]))
    click.echo("\n" + _table([("assignments", ", ".join(f"{k}: {v}" for k, v in st["assignments"].items()) or "0"),
                              ("decisions", ", ".join(f"{k}: {v}" for k, v in st["decisions"].items()) or "-"),
                              ("rewards approved", f"${st['rewards_usd']}"),
                              ("bonuses paid", f"${st['bonuses_paid_usd']}"),
                              ("bonuses not confirmed", st["bonuses_planned"])], ["", ""]))
    if st["flagged"]:
        click.echo("\nFlagged, waiting for your decision (approve or reject before auto-approval):")
        click.echo(_table(st["flagged"]))
    if st["not_submitted"]:
        click.echo("\nVisits MTurk never received (in progress, returned, or externalSubmit failed):")
        click.echo(_table(st["not_submitted"]))


@mturk.command()
@click.argument("batch_id", type=int)
@pass_ctx
@cli_errors
def sync(c: Ctx, batch_id):
    """Pull HITs, assignments and bonus payments from MTurk (MTurk is the source of truth)."""
    c.confirm_live("syncing (grants the participated qualification)")
    report = c.service.sync(batch_id)
    click.echo(_table(sorted(report.items()), ["count", "value"]))


@mturk.command()
@click.argument("batch_id", type=int)
@click.option("--reject-below", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Reject a worker's submissions when their gold accuracy is below this (needs --min-gold scored "
                   "gold answers and confirmation). Default: reject nobody.")
@click.option("--min-gold", type=click.IntRange(1), default=10, show_default=True,
              help="Fewest scored gold answers before --reject-below may reject a worker.")
@click.option("--exclude/--no-exclude", default=True, show_default=True,
              help="Exclude workers the quality model flags from later batches (a qualification).")
@click.option("--gold-threshold", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Quality model: flag a worker when P(gold accuracy < this) >= 0.95 ...")
@click.option("--flag-min-gold", type=click.IntRange(1), default=5, show_default=True,
              help="... over at least this many gold answers (or on the consensus test).")
@click.option("--bonus", default=None, help="USD bonus for each approved assignment of workers who are not excluded.")
@click.option("--bonus-min-gold", type=click.FloatRange(0, 1), default=None,
              help="Only workers whose gold accuracy is at least this get --bonus.")
@click.option("--bonus-reason", default="Bonus for careful, accurate work. Thank you!", show_default=True)
@list_option("--approve", "approve_ids", help="Approve this assignment (e.g. a held one).")
@list_option("--override", "override_ids", help="Approve a rejected assignment (OverrideRejection).")
@list_option("--reject", "reject_ids", help="Reject this assignment by hand (needs --feedback).")
@click.option("--reject-flagged", is_flag=True, help="Reject every held assignment by hand (needs --feedback).")
@click.option("--feedback", default=None,
              help="What a rejected worker reads (with --reject-below it comes before the numbers).")
@click.option("--yes", is_flag=True, help="Confirm rejections without the prompt.")
@click.option("--execute", is_flag=True, help="Really approve, reject, exclude and pay (otherwise: show the plan).")
@pass_ctx
@cli_errors
def review(c: Ctx, batch_id, reject_below, min_gold, exclude, gold_threshold, flag_min_gold, bonus, bonus_min_gold,
           bonus_reason, approve_ids, override_ids, reject_ids, reject_flagged, feedback, yes, execute):
    """Review BATCH_ID safely: approve, exclude low-quality workers from later batches, reject only
    with --reject-below. The dry run lists every action with its reason and cost."""
    from argus.pipelines.mturk_review import mturk_worker_quality
    from crowd.providers.mturk_service import ReviewPolicy

    svc = c.service
    manual = approve_ids or override_ids or reject_ids or reject_flagged
    if manual:
        c.confirm_live("changing assignment decisions")
        rows = []
        if approve_ids:
            rows += [dict(assignment=a, outcome=o) for a, o in svc.approve(approve_ids, feedback).items()]
        if override_ids:
            rows += [dict(assignment=a, outcome=o) for a, o in
                     svc.approve(override_ids, feedback, override_rejection=True).items()]
        targets = list(reject_ids)
        if reject_flagged:
            targets += [f["assignment_id"] for f in svc.status(batch_id)["flagged"]]
        if targets:
            if not feedback:
                raise click.UsageError("rejecting needs --feedback (the worker reads it)")
            _confirm_rejections(yes, len(targets), feedback)
            rows += [dict(assignment=a, outcome=o) for a, o in svc.reject(targets, feedback, confirm=True).items()]
        click.echo(_table(rows))
        return
    policy = ReviewPolicy(reject_below=reject_below, min_gold=min_gold, exclude=exclude, feedback=feedback or "",
                          bonus=bonus, bonus_min_gold=bonus_min_gold, bonus_reason=bonus_reason)
    policy.check()
    quality = mturk_worker_quality(svc.db, batch_id, gold_threshold=gold_threshold, min_gold=flag_min_gold)
    plan = svc.review(batch_id, policy, quality, dry_run=True)
    rejects = [p for p in plan if p["action"] == "reject"]
    if execute:
        c.confirm_live("reviewing assignments (pays workers)")
        if rejects:
            _confirm_rejections(yes, len(rejects), "the numbers shown in the reason column")
        plan = svc.review(batch_id, policy, quality, confirm_rejections=True)
    shown = [dict(p, cost=f"${p['cost_usd']}", reason=p.get("feedback") or p["reason"]) for p in plan]
    click.echo(_table(shown, ["worker_id", "assignment_id", "action", "cost", "reason"] + (["outcome"] if execute else [])))
    totals = {}
    for p in plan:
        n, usd = totals.get(p["action"], (0, 0))
        totals[p["action"]] = (n + 1, usd + p["cost_usd"])
    click.echo("\n" + ", ".join(f"{a} {n} (${usd})" for a, (n, usd) in totals.items()) +
               f"; total ${sum((p['cost_usd'] for p in plan), 0)}" if plan else "\nNothing to review.")
    if not execute and plan:
        click.echo("Dry run: add --execute to carry out this plan.")


def _confirm_rejections(yes: bool, n: int, feedback: str) -> None:
    if yes:
        return
    click.echo(f"About to reject {n} assignment(s); the worker reads: {feedback!r}")
    if not click.confirm("Rejections lower the workers' approval rates. Continue?", default=False):
        raise click.ClickException("not confirmed; nothing was rejected")


@mturk.command()
@click.argument("batch_id", type=int)
@click.option("--amount", default=None, help="USD for every approved assignment (see --min-gold).")
@click.option("--min-gold", type=click.FloatRange(0, 1), default=None, help="Only assignments with gold accuracy >= this.")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False),
              help="CSV with columns worker_id,amount (one bonus per worker).")
@click.option("--reason", required=True, help="Message the worker reads with the bonus.")
@click.option("--key", default="performance", show_default=True,
              help="What the bonus is for; each (assignment, key) is paid at most once.")
@click.option("--max-budget", default=None, help="Refuse if bonuses + fees are above this (USD).")
@click.option("--execute", is_flag=True, help="Really pay (otherwise: show the plan).")
@pass_ctx
@cli_errors
def bonus(c: Ctx, batch_id, amount, min_gold, csv_path, reason, key, max_budget, execute):
    """Pay bonuses for approved work of BATCH_ID, exactly once (ledger + UniqueRequestToken)."""
    if bool(amount) == bool(csv_path):
        raise click.UsageError("give exactly one of --amount and --csv")
    per_worker = None
    if csv_path:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"worker_id", "amount"} <= set(reader.fieldnames):
                raise click.BadParameter(f"{csv_path}: needs columns worker_id,amount", param_hint="--csv")
            per_worker = {row["worker_id"].strip(): row["amount"].strip() for row in reader}
    svc = c.service
    plan = svc.plan_bonuses(batch_id, amount=amount, min_gold=min_gold, per_worker=per_worker)
    if execute:
        c.confirm_live(f"paying {len(plan)} bonuses")
    summary = svc.bonus(batch_id, plan, reason, key, dry_run=not execute, max_budget=max_budget)
    click.echo(_table([dict(worker_id=p["worker_id"], assignment_id=p["assignment_id"], amount=f"${p['amount']}")
                       for p in plan]))
    click.echo(f"\n{summary['planned']} bonuses, ${summary['total_usd']} + ${summary['fees_usd']} MTurk fee.")
    if not execute:
        click.echo("Dry run: add --execute to pay.")
    else:
        click.echo(f"Paid now: {summary['paid_now']}; already paid earlier: {summary['already_paid']}.")


@mturk.command()
@click.argument("worker_ids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why (MTurk keeps it; the worker may see it).")
@click.option("--unblock", is_flag=True, help="Lift the blocks instead.")
@pass_ctx
@cli_errors
def block(c: Ctx, worker_ids, reason, unblock):
    """Block MTurk workers from your HITs and from new Argus tasks (or --unblock)."""
    c.confirm_live("blocking workers")
    out = c.service.unblock(worker_ids, reason) if unblock else c.service.block(worker_ids, reason)
    click.echo(_table(sorted(out.items()), ["worker", "outcome"]))


@mturk.command()
@click.argument("batch_id", type=int)
@click.option("--delete", "delete_after", is_flag=True, help="Also delete HITs whose assignments are all reviewed.")
@pass_ctx
@cli_errors
def expire(c: Ctx, batch_id, delete_after):
    """Expire BATCH_ID's HITs now (no new workers; accepted work can still be submitted)."""
    c.confirm_live("expiring HITs")
    click.echo(f"Expired {c.service.expire(batch_id)} HITs.")
    if delete_after:
        _delete(c, batch_id)


def _delete(c: Ctx, batch_id: int) -> None:
    out = c.service.delete(batch_id)
    click.echo(f"Deleted {out['deleted']} HITs.")
    if out["waiting"]:
        click.echo(_table(out["waiting"], ["hit_id", "not deleted because"]))


@mturk.command()
@click.argument("batch_id", type=int)
@pass_ctx
@cli_errors
def delete(c: Ctx, batch_id):
    """Delete BATCH_ID's expired HITs once every assignment is approved or rejected."""
    c.confirm_live("deleting HITs")
    _delete(c, batch_id)


@mturk.command()
@click.argument("batch_id", type=int, required=False)
@list_option("--worker", "worker_ids", help="Notify this worker (default: every worker of BATCH_ID).")
@click.option("--subject", required=True)
@click.option("--message", required=True)
@pass_ctx
@cli_errors
def notify(c: Ctx, batch_id, worker_ids, subject, message):
    """E-mail workers through MTurk (100 per call; never twice for the same message)."""
    if batch_id is None and not worker_ids:
        raise click.UsageError("give BATCH_ID or --worker")
    c.confirm_live("e-mailing workers")
    ids = list(worker_ids) or c.service.batch_workers(batch_id)
    out = c.service.notify(ids, subject, message, batch_id)
    click.echo(f"Sent to {out['sent']} workers; {out['skipped']} already had this message.")
    if out["failures"]:
        click.echo(_table([dict(worker=f["WorkerId"], code=f["NotifyWorkersFailureCode"],
                                message=f["NotifyWorkersFailureMessage"]) for f in out["failures"]]))



@mturk.command()
@click.argument("batch_id", type=int)
@list_option("--hit", "hit_ids", help="Only this HIT (default: every live or expired HIT of the batch).")
@click.option("--assignments", type=click.IntRange(0), default=0, show_default=True,
              help="Assignments to add to each HIT (CreateAdditionalAssignmentsForHIT).")
@click.option("--time", "extend_time", default=None, help="Keep the HITs open this long from now (e.g. 2d).")
@click.option("--key", default="extend-1", show_default=True,
              help="What the extension is for; each (HIT, key) is extended at most once.")
@click.option("--max-budget", default=None, help="Refuse if the added assignments could cost more (USD).")
@click.option("--execute", is_flag=True, help="Really extend (otherwise: show the plan and its cost).")
@pass_ctx
@cli_errors
def extend(c: Ctx, batch_id, hit_ids, assignments, extend_time, key, max_budget, execute):
    """Give BATCH_ID's HITs more assignments and/or more time (dry run unless --execute)."""
    seconds = _seconds(extend_time, "--time") if extend_time else None
    if execute:
        c.confirm_live(f"extending batch {batch_id}")
    out = c.service.extend(batch_id, assignments, seconds, hit_ids or None, key, dry_run=not execute,
                           max_budget=max_budget)
    click.echo(_table(out["hits"], ["hit_id", "max_before", "max_after", "expire_at", "outcome"]))
    click.echo(f"\nAdded assignments cost at most ${out['cost_usd']} with MTurk's fee.")
    if not execute:
        click.echo("Dry run: add --execute to extend.")


@mturk.command()
@click.argument("worker_id")
@click.option("--amount", required=True, help="USD to pay (the HIT's reward).")
@click.option("--reason", required=True, help="Why; the worker reads it on the HIT and in the e-mail.")
@click.option("--key", default="compensation", show_default=True,
              help="What it is for; each (worker, key) is compensated at most once.")
@click.option("--notify/--no-notify", default=True, show_default=True, help="E-mail the worker the HIT's link.")
@click.option("--execute", is_flag=True, help="Really create the HIT (otherwise: show the cost).")
@pass_ctx
@cli_errors
def compensate(c: Ctx, worker_id, amount, reason, key, notify, execute):
    """Pay WORKER_ID through a HIT only they can see; run it again to approve their submission."""
    if execute:
        c.confirm_live(f"paying worker {worker_id}")
    out = c.service.compensate(worker_id, amount, reason, key, notify=notify, dry_run=not execute)
    click.echo(_table([(k, "" if v is None else str(v)) for k, v in out.items()], ["", ""]))
    if not execute:
        click.echo("Dry run: add --execute to create the compensation HIT.")
    elif out["status"] == "live":
        click.echo("Run the same command again after the worker has submitted, to approve and pay.")


def _qualification_option(fn):
    fn = click.option("--id", "qualification_id", default=None, help="Qualification type id.")(fn)
    fn = click.option("--low-quality", is_flag=True, help="The exclusion `review` grants for low-quality work.")(fn)
    return click.option("--study", default=None, help="The study's \"participated\" qualification.")(fn)


@mturk.group("qualification")
def qualification():
    """Grant, revoke and grade MTurk qualifications (exclusions, retakes, qualification tests)."""


@qualification.command("revoke")
@click.argument("worker_ids", nargs=-1, required=True)
@_qualification_option
@click.option("--reason", default="", help="Why (MTurk may show it to the worker).")
@pass_ctx
@cli_errors
def qualification_revoke(c: Ctx, worker_ids, study, low_quality, qualification_id, reason):
    """Take a qualification back from WORKER_IDS (sync will not grant it again)."""
    c.confirm_live("revoking qualifications")
    qid = c.service.qualification_id(study, low_quality, qualification_id)
    click.echo(_table(sorted(c.service.revoke(qid, worker_ids, reason).items()), ["worker", "outcome"]))


@qualification.command("grant")
@click.argument("worker_ids", nargs=-1, required=True)
@_qualification_option
@click.option("--value", type=int, default=1, show_default=True)
@pass_ctx
@cli_errors
def qualification_grant(c: Ctx, worker_ids, study, low_quality, qualification_id, value):
    """Give WORKER_IDS a qualification (e.g. --low-quality to exclude them from later batches)."""
    c.confirm_live("granting qualifications")
    qid = c.service.qualification_id(study, low_quality, qualification_id)
    click.echo(_table(sorted(c.service.grant(qid, worker_ids, value).items()), ["worker", "outcome"]))


@qualification.command("requests")
@click.option("--id", "qualification_id", default=None, help="Only requests for this qualification type.")
@list_option("--grant", "grants", metavar="REQUEST_ID[:SCORE]", help="Grant a request (score 1 "
                                                                                      "unless given).")
@list_option("--reject", "rejects", metavar="REQUEST_ID", help="Reject a request (needs --reason).")
@click.option("--reason", default=None, help="What a rejected worker reads.")
@click.option("--show-answers", is_flag=True, help="Print each request's test answers.")
@pass_ctx
@cli_errors
def qualification_requests(c: Ctx, qualification_id, grants, rejects, reason, show_answers):
    """List workers' pending qualification requests, or grant and reject them."""
    if grants or rejects:
        if rejects and not reason:
            raise click.UsageError("rejecting needs --reason (the worker reads it)")
        c.confirm_live("grading qualification requests")
        parsed = {}
        for g in grants:
            rid, _, score = g.partition(":")
            try:
                parsed[rid] = int(score or 1)
            except ValueError:
                raise click.BadParameter(f"{g!r}: the score after ':' must be an integer", param_hint="--grant") from None
        out = c.service.grade_requests(parsed, {r: reason for r in rejects})
        click.echo(_table(sorted(out.items()), ["request", "outcome"]))
        return
    rows = c.service.qualification_requests(qualification_id)
    cols = ["request_id", "qualification_type_id", "worker_id", "submitted"] + (["answer"] if show_answers else [])
    click.echo(_table(rows, cols))


@mturk.command()
@click.argument("batch_id", type=int)
@click.option("--sns", "sns_arn", default=None, help="SNS topic ARN that receives the events.")
@click.option("--sqs", "sqs_url", default=None, help="SQS queue URL that receives the events.")
@list_option("--event", "events",
              help="Event type (repeatable; default: AssignmentSubmitted, AssignmentReturned, AssignmentAbandoned, "
                   "HITReviewable, HITExpired).")
@click.option("--off", is_flag=True, help="Stop sending events for the batch's HIT types.")
@click.option("--test", is_flag=True, help="Also send a test event to the destination.")
@pass_ctx
@cli_errors
def notifications(c: Ctx, batch_id, sns_arn, sqs_url, events, off, test):
    """Send MTurk's events for BATCH_ID's HIT types to SNS or SQS (UpdateNotificationSettings)."""
    if off and (sns_arn or sqs_url):
        raise click.UsageError("--off takes no destination")
    if not off and bool(sns_arn) == bool(sqs_url):
        raise click.UsageError("give exactly one of --sns and --sqs (or --off)")
    c.confirm_live("changing notification settings")
    kw = {} if off else dict(destination=sns_arn or sqs_url, transport="SNS" if sns_arn else "SQS")
    if events:
        kw["events"] = events
    rows = c.service.notifications(batch_id, active=not off, test=test, **kw)
    click.echo(_table(rows, ["hit_type_id", "active", "transport", "destination", "events"]))
