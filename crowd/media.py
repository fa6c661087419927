"""Batch media: the manifest (the only files a batch serves) and signed per-visit media URLs.

A batch serves exactly the files its manifest (`Media` rows, written when the batch is created)
lists, by key; never a folder. Keys are what task payloads name: a sheets folder's relative
paths (`images/s1.png`), or opaque keys for image batches (`i00001.png`), so that file and
folder names, which may carry the label, never reach a worker.

Worker-facing URLs are `/media/<batch>/<key>?s=<signature>`: the signature binds one visit to
one file (HMAC of the server's secret over batch, key and visit, timestamped), and the server
mints it only for the files of a task it shows that visit (or of the batch's practice item).
A URL works for whoever holds it, but it opens that one file only, and it expires with the
visit token. Keys under `researcher/` (sheet images that show the model's and the true label,
"wrong (true: X)") are never signed for a worker: only the dashboard serves them, after login.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from crowd.models import Media

RESEARCHER_PREFIX = "researcher/"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
PREVIEW_VISIT = 0  # the signature of the public MTurk preview (practice items only)


def payload_media(payload: dict) -> list[str]:
    """The media keys a task payload names (its image, heat maps and exemplar strips)."""
    keys = []
    for value in (payload.get("image"), payload.get("exemplar_strip")):
        if isinstance(value, str) and value:
            keys.append(value)
    for arg in payload.get("arguments") or []:
        for field in ("heatmap", "exemplar_strip"):
            if isinstance(arg, dict) and isinstance(arg.get(field), str) and arg[field]:
                keys.append(arg[field])
    return list(dict.fromkeys(keys))


def add_manifest(session: Session, batch_id: int, entries: dict[str, str]) -> int:
    """Record `{key: absolute file path}` as the batch's media (keys already there are kept)."""
    have = set(session.scalars(select(Media.key).where(Media.batch_id == batch_id)))
    rows = [{"batch_id": batch_id, "key": k, "path": str(p)} for k, p in entries.items() if k not in have]
    if rows:
        session.execute(Media.__table__.insert(), rows)
    return len(rows)


def manifest_path(session: Session, batch_id: int, key: str) -> Path | None:
    """The file a batch serves under `key`, or None when its manifest has no such key."""
    path = session.scalar(select(Media.path).where(Media.batch_id == batch_id, Media.key == key))
    return Path(path) if path else None


def _serializer(batch_id: int, key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"argus.media:{batch_id}:{key}")


def sign(batch_id: int, key: str, visit_id: int) -> str:
    """The signature of `key` of `batch_id` for one visit (`PREVIEW_VISIT` for the preview)."""
    if key.startswith(RESEARCHER_PREFIX):
        raise ValueError(f"media key {key!r} is researcher-only and is never signed for a worker")
    return _serializer(batch_id, key).dumps(int(visit_id))


def signed_visit(batch_id: int, key: str, signature) -> int | None:
    """The visit a media signature was made for, or None when it is missing, forged, made for
    another batch or file, or older than the visit token's lifetime."""
    if not isinstance(signature, str) or not signature or len(signature) > 200:
        return None
    try:
        visit = _serializer(batch_id, key).loads(signature, max_age=current_app.config["VISIT_TOKEN_MAX_AGE"])
    except (BadSignature, SignatureExpired):
        return None
    return visit if isinstance(visit, int) else None


def media_url(batch_id: int, key: str, visit_id: int) -> str:
    """A worker-facing URL of one file, signed for one visit."""
    return url_for("worker.media", batch_id=batch_id, relpath=key, s=sign(batch_id, key, visit_id))


def signed_urls(batch_id: int, payload: dict, visit_id: int) -> dict[str, str]:
    """`{key: signed URL}` for every file a task payload names (the JSON API's `media`)."""
    return {key: media_url(batch_id, key, visit_id) for key in payload_media(payload)}
