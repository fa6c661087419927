"""Practice items with known answers, checked one by one with feedback, and a pass mark.

A batch's practice lives in its options (never tasks: practice answers are not judgments and
are never leased or exported):

- `practice`: `[{"kind", "sheet" | "channel", "answer", "explain"}]`, answers shaped like gold
  answers (`kinds.validate_gold`), `explain` the sentence the worker reads after checking
  (why that is the answer). `resolve_practice` copies each item's task payload in at creation;
- `practice_pass`: share of practice items a worker must get right at the first try (default
  0.5); failing ends the visit with a partial completion (`screening_failed`);
- `practice_key`: passing is remembered per worker under this key (default: the practised
  kinds), so a worker who passed once skips the practice of later batches with the same key.

Attempts and outcomes are events (`practice_answer`, `practice_passed`, `practice_failed`), so
nothing here needs a table of its own.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crowd import kinds as K
from crowd.models import Batch, Event, Visit

DEFAULT_PASS = 0.5
NONE, PENDING, PASSED, FAILED = "none", "pending", "passed", "failed"


class PracticeError(ValueError):
    """A practice definition the batch cannot use; `field` names it (`practice.0.answer`)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def resolve_practice(options: dict, payload_of) -> dict:
    """Check the practice options of a new batch and copy each item's payload in.
    `payload_of(kind, key)` returns the payload of the batch's task of that kind for a sheet id
    (a channel for name_feature), or None. Returns the options to store."""
    items = options.get("practice")
    if items is None:
        if "practice_pass" in options:
            raise PracticeError("practice_pass", "needs practice items")
        return options
    if not isinstance(items, list) or not items:
        raise PracticeError("practice", "must be a non-empty list of practice items")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PracticeError(f"practice.{i}", "must be an object with kind, sheet (or channel) and answer")
        kind = item.get("kind")
        if kind not in K.KINDS:
            raise PracticeError(f"practice.{i}.kind", f"must be one of {', '.join(K.KINDS)}, got {kind!r}")
        key = item.get("channel") if kind == "name_feature" else item.get("sheet")
        payload = payload_of(kind, None if key is None else str(key))
        if payload is None:
            raise PracticeError(f"practice.{i}", f"no {kind} task for {key!r} in this batch")
        try:
            answer = K.validate_gold(kind, payload, item.get("answer"))
        except K.AnswerError as exc:
            raise PracticeError(f"practice.{i}.{exc.field}", exc.message) from None
        explain = item.get("explain", "")
        if not isinstance(explain, str) or len(explain) > 500:
            raise PracticeError(f"practice.{i}.explain", "must be a text of at most 500 characters")
        out.append({"kind": kind, "sheet": item.get("sheet"), "payload": payload, "answer": answer,
                    "explain": explain.strip()})
    mark = options.get("practice_pass", DEFAULT_PASS)
    if isinstance(mark, bool) or not isinstance(mark, (int, float)) or not 0 < mark <= 1:
        raise PracticeError("practice_pass", f"must be a share in (0, 1], got {mark!r}")
    key = options.get("practice_key") or "kinds:" + "+".join(sorted({p["kind"] for p in out}))
    if not isinstance(key, str) or len(key) > 100:
        raise PracticeError("practice_key", "must be a text of at most 100 characters")
    return {**options, "practice": out, "practice_pass": float(mark), "practice_key": key}


def items(batch: Batch) -> list[dict]:
    return list((batch.options or {}).get("practice") or [])


def _events(session: Session, worker_id: int, types: tuple[str, ...]) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.worker_id == worker_id, Event.type.in_(types))
                                .order_by(Event.id)))


def state(session: Session, batch: Batch, visit: Visit) -> str:
    """`none` (the batch has no practice), `passed` (now or in an earlier batch with the same
    key), `failed` (in this batch: the worker may not try again) or `pending`."""
    if not items(batch):
        return NONE
    key = batch.options["practice_key"]
    for e in _events(session, visit.worker_id, ("practice_passed", "practice_failed")):
        if e.type == "practice_passed" and e.data.get("key") == key:
            return PASSED
        if e.type == "practice_failed" and e.batch_id == batch.id:
            return FAILED
    return PENDING


def first_scores(session: Session, batch: Batch, visit: Visit) -> dict[int, float]:
    """Practice item index -> score of the visit's first answer to it."""
    out: dict[int, float] = {}
    for e in _events(session, visit.worker_id, ("practice_answer",)):
        if e.data.get("visit") == visit.id:
            out.setdefault(int(e.data["index"]), float(e.data["score"]))
    return out


def describe(kind: str, payload: dict, answer: dict) -> str:
    """The known answer in the worker's words."""
    if kind == "label":
        return f"the image shows {answer['label']}"
    if kind == "rate_arguments":
        words = {"yes": "yes", "no": "no", "cant_tell": "can't tell"}
        order = {str(a["rank"]): i + 1 for i, a in enumerate(payload["arguments"])}
        parts = [f"argument {order.get(r, r)}: {words[v]}" for r, v in sorted(answer.get("arguments", {}).items(),
                                                                             key=lambda kv: order.get(kv[0], 0))]
        if "match" in answer:
            parts.append(f"match: about {answer['match']} of 5")
        return "; ".join(parts)
    if kind == "name_feature":
        return "a name such as " + " or ".join(f"“{n}”" for n in answer["names"][:3])
    if kind == "mark_rationale":
        return "marks inside the " + ("part" if len(answer["boxes"]) == 1 else "parts") + " that show the class"
    return ""


def check(session: Session, batch: Batch, visit: Visit, index: int, answer) -> dict:
    """Score one practice answer and say why. The first answer to each item counts towards the
    pass mark; once every item has a first answer the visit passes or fails (the caller ends a
    failed visit as screened out: `crowd.service.end_visit`). Raises `K.AnswerError` for an incomplete answer."""
    its = items(batch)
    if not 0 <= index < len(its):
        raise K.AnswerError("index", f"no practice item {index}")
    item = its[index]
    clean = K.validate_answer(item["kind"], item["payload"], answer)
    score = float(K.score_gold(item["kind"], item["answer"], clean))
    now_state = state(session, batch, visit)
    scores = first_scores(session, batch, visit)
    counted = now_state == PENDING and index not in scores
    if counted:
        scores[index] = score
        session.add(Event(type="practice_answer", batch_id=batch.id, worker_id=visit.worker_id,
                          data={"visit": visit.id, "index": index, "score": score}))
    right = score >= 1.0
    expected = describe(item["kind"], item["payload"], item["answer"])
    feedback = ("Right" if right else ("Partly right" if score > 0 else "Not quite")) + f": {expected}."
    if item["explain"]:
        feedback += " " + item["explain"]
    out = {"index": index, "correct": right, "score": score, "feedback": feedback, "counted": counted,
           "checked": len(scores), "of": len(its), "pass_mark": batch.options["practice_pass"], "state": now_state}
    if now_state == PENDING and len(scores) == len(its):
        share = sum(scores.values()) / len(its)
        passed = share >= batch.options["practice_pass"] - 1e-9
        session.add(Event(type="practice_passed" if passed else "practice_failed", batch_id=batch.id,
                          worker_id=visit.worker_id,
                          data={"visit": visit.id, "key": batch.options["practice_key"], "share": round(share, 4)}))
        out["state"] = PASSED if passed else FAILED
        out["share"] = round(share, 4)
    return out
