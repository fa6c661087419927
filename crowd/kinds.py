"""The four task kinds: payloads, answer validation, gold scoring and export rows.

Answers arrive as JSON objects; `validate_answer(kind, payload, answer)` returns the cleaned
answer or raises `AnswerError` whose `field` names the offending field (the API turns it into a
400). `export_rows` turns one stored answer into the rows of the judgments frame
(docs/contracts.md "Judgments frame").

Answer shapes:
- rate_arguments: `{"arguments": {"<rank>": "yes"|"no"|"cant_tell", ...}, "match": 1..5,
  "comment": str}` (every argument of the task rated; comment optional);
- name_feature: `{"name": str, "coherence": 1..5}`;
- mark_rationale: `{"points": [[x, y], ...], "boxes": [[x0, y0, x1, y1], ...]}` in normalised
  image coordinates [0, 1], 1..max_marks marks in all;
- label: `{"label": <one of the task's classes> | "cant_tell"}` ("can't tell" is its own answer,
  exported as `cant_tell`; aggregation treats it as an abstention).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata

from crowd.judgments import CANT_TELL, KINDS, LIKERT, RATINGS
MAX_COMMENT = 2000
MAX_NAME = 80
DEFAULT_MAX_MARKS = 5
HARD_MAX_MARKS = 50  # whatever a batch asks for, never store more marks than this


class AnswerError(ValueError):
    """A submitted answer is invalid; `field` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def normalise_name(raw: str) -> str:
    """Feature name as compared and exported: NFKC, lower case, inner whitespace collapsed,
    punctuation trimmed at both ends ("  Red  Wheel!" -> "red wheel")."""
    text = unicodedata.normalize("NFKC", raw).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .,;:!?\"'`()[]{}-_")


def _likert(value, field: str) -> int:
    scale = f"{LIKERT[0]}..{LIKERT[-1]}"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AnswerError(field, f"must be an integer {scale}")
    try:
        number = int(value)
    except ValueError:
        raise AnswerError(field, f"must be an integer {scale}") from None
    if number not in LIKERT:
        raise AnswerError(field, f"must be {scale}, got {number}")
    return number


def _text(value, field: str, limit: int, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise AnswerError(field, "must be a string")
    value = unicodedata.normalize("NFC", value).replace("\x00", "").strip()
    if required and not value:
        raise AnswerError(field, "is required")
    if len(value) > limit:
        raise AnswerError(field, f"is longer than {limit} characters")
    return value


def _coord(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnswerError(field, "must be a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise AnswerError(field, f"must be in [0, 1], got {value}")
    return round(float(value), 4)


def validate_answer(kind: str, payload: dict, answer) -> dict:
    """Check `answer` against the task `payload` of `kind`; return the cleaned answer.

    Raises `AnswerError` naming the field (e.g. `answer.arguments.2`).
    """
    if not isinstance(answer, dict):
        raise AnswerError("answer", "must be a JSON object")
    if kind == "rate_arguments":
        ratings = answer.get("arguments")
        if not isinstance(ratings, dict):
            raise AnswerError("answer.arguments", "must be an object mapping argument rank to yes|no|cant_tell")
        ranks = [str(a["rank"]) for a in payload["arguments"]]
        extra = sorted(set(map(str, ratings)) - set(ranks))
        if extra:
            raise AnswerError(f"answer.arguments.{extra[0]}", "is not an argument of this task")
        clean = {}
        for rank in ranks:
            value = ratings.get(rank)
            if value not in RATINGS:
                raise AnswerError(f"answer.arguments.{rank}", "must be one of yes, no, cant_tell")
            clean[rank] = value
        return {
            "arguments": clean,
            "match": _likert(answer.get("match"), "answer.match"),
            "comment": _text(answer.get("comment"), "answer.comment", MAX_COMMENT, required=False),
        }
    if kind == "name_feature":
        raw = _text(answer.get("name"), "answer.name", MAX_NAME, required=True)
        if not normalise_name(raw):
            raise AnswerError("answer.name", "has no letters or digits")
        return {"name": raw, "coherence": _likert(answer.get("coherence"), "answer.coherence")}
    if kind == "mark_rationale":
        max_marks = min(int(payload.get("max_marks", DEFAULT_MAX_MARKS)), HARD_MAX_MARKS)
        points, boxes = answer.get("points") or [], answer.get("boxes") or []
        for name, value in (("points", points), ("boxes", boxes)):
            if not isinstance(value, list):
                raise AnswerError(f"answer.{name}", "must be a list")
        if len(points) + len(boxes) > max_marks:
            raise AnswerError("answer.points", f"at most {max_marks} marks (points + boxes) allowed")
        if not points and not boxes:
            raise AnswerError("answer.points", "mark at least one point or box")
        clean_points = []
        for i, p in enumerate(points):
            if not isinstance(p, list) or len(p) != 2:
                raise AnswerError(f"answer.points.{i}", "must be [x, y]")
            clean_points.append([_coord(p[0], f"answer.points.{i}.0"), _coord(p[1], f"answer.points.{i}.1")])
        clean_boxes = []
        for i, b in enumerate(boxes):
            if not isinstance(b, list) or len(b) != 4:
                raise AnswerError(f"answer.boxes.{i}", "must be [x0, y0, x1, y1]")
            x0, y0, x1, y1 = (_coord(v, f"answer.boxes.{i}.{j}") for j, v in enumerate(b))
            clean_boxes.append([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)])
        return {"points": clean_points, "boxes": clean_boxes}
    if kind == "label":
        value = answer.get("label")
        if not isinstance(value, str) or (value not in payload["classes"] and value != CANT_TELL):
            raise AnswerError("answer.label", f"must be one of the task's classes or {CANT_TELL}")
        return {"label": value}
    raise AnswerError("kind", f"unknown task kind {kind!r}")


def validate_gold(kind: str, payload: dict, gold) -> dict:
    """Check a gold answer. Gold may cover part of an answer:
    rate_arguments `{"arguments": {rank: rating}}` (and/or `"match"`), name_feature
    `{"names": [accepted names]}`, mark_rationale `{"boxes": [[x0,y0,x1,y1], ...]}` (marks must
    fall inside), label `{"label": class}`."""
    if not isinstance(gold, dict) or not gold:
        raise AnswerError("gold", "must be a non-empty object")
    if kind == "rate_arguments":
        ranks = {str(a["rank"]) for a in payload["arguments"]}
        args = gold.get("arguments", {})
        for rank, value in args.items():
            if str(rank) not in ranks or value not in RATINGS:
                raise AnswerError(f"gold.arguments.{rank}", "unknown rank or rating")
        out = {"arguments": {str(k): v for k, v in args.items()}}
        if "match" in gold:
            out["match"] = _likert(gold["match"], "gold.match")
        return out
    if kind == "name_feature":
        names = gold.get("names")
        if not isinstance(names, list) or not names:
            raise AnswerError("gold.names", "must be a non-empty list of accepted names")
        return {"names": sorted({normalise_name(str(n)) for n in names})}
    if kind == "mark_rationale":
        boxes = gold.get("boxes")
        if not isinstance(boxes, list) or not boxes:
            raise AnswerError("gold.boxes", "must be a non-empty list of [x0,y0,x1,y1]")
        return {"boxes": [[_coord(v, f"gold.boxes.{i}") for v in b] for i, b in enumerate(boxes)]}
    if kind == "label":
        if gold.get("label") not in payload["classes"]:
            raise AnswerError("gold.label", "must be one of the task's classes")
        return {"label": gold["label"]}
    raise AnswerError("kind", f"unknown task kind {kind!r}")


def score_gold(kind: str, gold: dict, answer: dict) -> float:
    """Score a validated answer against gold: 1.0 right, 0.0 wrong (fractions for partial)."""
    if kind == "rate_arguments":
        checks = [answer["arguments"].get(rank) == value for rank, value in gold.get("arguments", {}).items()]
        if "match" in gold:
            checks.append(abs(answer["match"] - gold["match"]) <= 1)
        return sum(checks) / len(checks) if checks else 1.0
    if kind == "name_feature":
        return 1.0 if normalise_name(answer["name"]) in gold["names"] else 0.0
    if kind == "mark_rationale":
        def inside(x, y):
            return any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in gold["boxes"])
        centres = [tuple(p) for p in answer["points"]] + [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in answer["boxes"]]
        hits = sum(inside(x, y) for x, y in centres)
        return 1.0 if hits * 2 >= len(centres) else 0.0
    if kind == "label":
        return 1.0 if answer["label"] == gold["label"] else 0.0
    raise ValueError(f"unknown task kind {kind!r}")


def export_rows(kind: str, payload: dict, answer: dict) -> list[dict]:
    """The answer-specific columns of the judgments frame, one dict per row:
    `item, label, channel, rank, text, points, boxes` (docs/contracts.md)."""
    base = {"channel": None, "rank": None, "text": "", "points": "", "boxes": ""}
    if kind == "rate_arguments":
        rows = []
        for arg in payload["arguments"]:
            rank = str(arg["rank"])
            rows.append({**base, "item": f"arg:{rank}", "label": answer["arguments"][rank],
                         "rank": int(arg["rank"]), "channel": int(arg["channel"])})
        rows.append({**base, "item": "match", "label": str(answer["match"]), "text": answer.get("comment", "")})
        return rows
    if kind == "name_feature":
        channel = int(payload["channel"])
        return [
            {**base, "item": "name", "label": normalise_name(answer["name"]), "text": answer["name"], "channel": channel},
            {**base, "item": "coherence", "label": str(answer["coherence"]), "channel": channel},
        ]
    if kind == "mark_rationale":
        n = len(answer["points"]) + len(answer["boxes"])
        return [{**base, "item": "rationale", "label": str(n),
                 "points": json.dumps(answer["points"]), "boxes": json.dumps(answer["boxes"])}]
    if kind == "label":
        return [{**base, "item": "label", "label": answer["label"]}]
    raise ValueError(f"unknown task kind {kind!r}")


def gold_label_for(kind: str, gold: dict | None, item: str) -> str:
    """The `gold_label` column of one export row (empty when gold says nothing about it)."""
    if not gold:
        return ""
    if kind == "rate_arguments":
        if item.startswith("arg:"):
            return gold.get("arguments", {}).get(item[4:], "")
        return str(gold["match"]) if item == "match" and "match" in gold else ""
    if kind == "name_feature":
        return "|".join(gold["names"]) if item == "name" else ""
    if kind == "mark_rationale":
        return json.dumps(gold["boxes"])
    if kind == "label":
        return gold["label"]
    return ""


def feature_names_shown(options: dict | None) -> bool:
    """Whether rate_arguments tasks show the model's names for its features. Blind by default:
    a name next to the validity question primes the answer; a batch asks for names with the
    option `show_feature_names: true` (exported per row as `names_shown`)."""
    return bool((options or {}).get("show_feature_names", False))


def worker_view(kind: str, payload: dict, options: dict | None) -> dict:
    """The payload as the worker pages and `/w/api/next` show it: in a blind batch the model's
    feature names (and its sentence, which quotes them) are left out."""
    if kind != "rate_arguments" or feature_names_shown(options):
        return payload
    out = {k: v for k, v in payload.items() if k != "sentence"}
    out["arguments"] = [{k: v for k, v in a.items() if k != "name"} for a in payload["arguments"]]
    return out
