"""Media: a batch serves only the files of its manifest, through URLs signed per visit and file;
the sheet images that show the model's and the true label are for logged-in researchers only;
a label batch whose images lie in several folders serves no folder at all."""

import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from crowd.db import get_database
from crowd.models import Batch, Media

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _srcs(html: str) -> list[str]:
    return [s.replace("&amp;", "&") for s in re.findall(r'<img[^>]* src="([^"]+)"', html)]


def _visit_page(client, batch_id, worker):
    r = client.get(f"/w/{batch_id}?worker={worker}")
    token = r.location.split("/w/v/")[1].split("/")[0]
    client.post(f"/w/v/{token}/consent", data={"agree": "yes"})
    return token, client.get(f"/w/v/{token}/task").get_data(as_text=True)


def test_media_urls_are_signed_per_visit_and_file(client, h):
    b = h.create_batch(client, kind="rate_arguments", redundancy=2)
    token, html = _visit_page(client, b["id"], "ann")
    srcs = _srcs(html)
    assert len(srcs) >= 3 and all(s.startswith(f"/media/{b['id']}/") and "?s=" in s for s in srcs)
    for src in srcs:
        r = client.get(src)
        assert r.status_code == 200 and r.mimetype == "image/png", src
    image = next(s for s in srcs if "/images/" in s)
    key = urlparse(image).path.split("/", 3)[3]
    # the bare URL (no signature), a forged one, and the signature moved onto another file: all 404
    assert client.get(f"/media/{b['id']}/{key}").status_code == 404
    assert client.get(f"/media/{b['id']}/{key}?s=forged").status_code == 404
    sig = parse_qs(urlparse(image).query)["s"][0]
    other = "images/s3.png" if key != "images/s3.png" else "images/s1.png"
    assert client.get(f"/media/{b['id']}/{other}?s={sig}").status_code == 404
    # ... and onto the same file of another batch
    b2 = h.create_batch(client, kind="rate_arguments")
    assert client.get(f"/media/{b2['id']}/{key}?s={sig}").status_code == 404
    # the JSON API gives the signed URLs of the task's files
    w = h.WorkerClient(client, b["id"], "bob").start()
    n = w.next()
    assert set(n["media"]) >= {n["task"]["payload"]["image"]}
    assert all(client.get(url).status_code == 200 for url in n["media"].values())
    assert "media_base" not in n


def test_sheet_images_with_labels_are_for_researchers_only(client, h, sheets_dir, tmp_path):
    folder = tmp_path / "sheets"
    shutil.copytree(sheets_dir, folder)
    for sid in ("s1", "s2", "s3"):  # explain's rendered sheets: "wrong (true: X)"
        (folder / "sheets" / f"{sid}.png").write_bytes(PNG)
    b = h.create_batch(client, sheets=folder, kind="label")
    _, html = _visit_page(client, b["id"], "ann")
    assert not any("sheets/" in s for s in _srcs(html))
    for path in (f"/media/{b['id']}/sheets/s1.png", f"/media/{b['id']}/researcher/sheets/s1.png"):
        assert client.get(path).status_code == 404, path
    # a signature of a worker file does not open a sheet image either
    sig = parse_qs(urlparse(_srcs(html)[0]).query)["s"][0]
    assert client.get(f"/media/{b['id']}/researcher/sheets/s1.png?s={sig}").status_code == 404
    admin_url = f"/admin/batches/{b['id']}/media/researcher/sheets/s1.png"
    assert client.get(admin_url).status_code == 302  # to the login form
    h.admin_login(client)
    r = client.get(admin_url)
    assert r.status_code == 200 and r.data == PNG and r.headers["Cache-Control"] == "no-store"
    assert client.get(f"/admin/batches/{b['id']}/media/sheets/s1.json").status_code == 404


def test_label_batch_from_two_folders_serves_its_files_only(client, h, tmp_path):
    for folder in ("cat", "dog", "private"):
        (tmp_path / folder).mkdir()
    (tmp_path / "cat" / "cat_001.png").write_bytes(PNG)
    (tmp_path / "dog" / "dog_001.png").write_bytes(PNG)
    (tmp_path / "private" / "secret.png").write_bytes(b"\x89PNG secret")
    b = h.create_batch(client, sheets_dir=None, images=[str(tmp_path / "cat" / "cat_001.png"),
                                                       {"id": "x2", "image": str(tmp_path / "dog" / "dog_001.png")}],
                       classes=["cat", "dog"], redundancy=1, tasks_per_visit=2)
    with get_database(client.application).reading() as s:
        batch = s.get(Batch, b["id"])
        assert batch.media_root != "/" and batch.media_root == ""
        keys = sorted(s.scalars(select(Media.key).where(Media.batch_id == b["id"])))
    assert keys == ["i00001.png", "i00002.png"]  # opaque: no folder or file name (the label) in a URL
    w = h.WorkerClient(client, b["id"], "oracle").start()
    n = w.next()
    (key, url), = n["media"].items()
    assert key in keys and client.get(url).status_code == 200
    sig = parse_qs(urlparse(url).query)["s"][0]
    for path in ("private/secret.png", "../private/secret.png", str(tmp_path / "private" / "secret.png"),
                 "etc/hostname.png", "cat/cat_001.png"):
        r = client.get(f"/media/{b['id']}/{path}?s={sig}", follow_redirects=True)
        assert r.status_code == 404 and b"secret" not in r.data, path


def test_preview_and_practice_show_items_from_outside_the_batch(client, h):
    b = h.create_batch(client, kind="label", limit=2)  # s3 is not a task: it is the example
    preview = client.get(f"/w/{b['id']}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H").get_data(as_text=True)
    srcs = _srcs(preview)
    assert len(srcs) == 1 and "images/s3.png" in srcs[0] and client.get(srcs[0]).status_code == 200
    token, _ = _visit_page(client, b["id"], "ann")
    instructions = client.get(f"/w/v/{token}/instructions").get_data(as_text=True)
    assert 'id="example-form"' in instructions
    assert [urlparse(s).path for s in _srcs(instructions)] == [f"/media/{b['id']}/images/s3.png"]
    assert all(client.get(s).status_code == 200 for s in _srcs(instructions))
    # checked practice items: their sheets are held out of the tasks
    practice = [{"sheet": "s2", "kind": "label", "answer": {"label": "banana"}}]
    b2 = h.create_batch(client, kind="label", practice=practice)
    assert b2["tasks"] == 2
    token, _ = _visit_page(client, b2["id"], "bob")
    instructions = client.get(f"/w/v/{token}/instructions").get_data(as_text=True)
    assert 'data-practice="1"' in instructions
    assert [urlparse(s).path for s in _srcs(instructions)] == [f"/media/{b2['id']}/images/s2.png"]
    # a practice item that names a task of the batch (a name_feature channel) is refused
    r = client.post("/api/batches", json={"sheets_dir": str(h.SHEETS), "kinds": ["name_feature"], "practice": [
        {"channel": 3, "kind": "name_feature", "answer": {"names": ["round"]}}]}, headers=h.AUTH)
    assert r.status_code == 400 and "is a task of this batch" in r.get_json()["message"]


def test_old_batches_get_a_manifest_from_their_payloads(sqlite_app, sheets_dir):
    """A batch made before manifests existed (no Media rows) gets one from its task payloads."""
    from crowd.db import _media_manifest_v4

    client = sqlite_app.test_client()
    b = client.post("/api/batches", json={"sheets_dir": str(sheets_dir), "kind": "rate_arguments"},
                    headers={"Authorization": "Bearer test-api-token-123"}).get_json()
    db = get_database(sqlite_app)
    with db.transaction() as s:
        want = sorted(s.scalars(select(Media.key).where(Media.batch_id == b["id"])))
        s.query(Media).delete()
    with db.engine.begin() as conn:
        _media_manifest_v4(conn)
    with db.reading() as s:
        rows = s.execute(select(Media.key, Media.path).where(Media.batch_id == b["id"]).order_by(Media.key)).all()
    assert [k for k, _ in rows] == want and len(want) == 3 + 6 + 3  # images, heat maps, strips
    assert all(Path(p) == Path(sheets_dir).resolve() / k for k, p in rows)
