"""One handler answers every request the service layer refuses: JSON under `/api` and `/w/api`,
the worker's message page (its title says what went wrong) on worker pages, the plain HTTP error
page on the dashboard; the status is the exception's."""

import re

import pytest


def _title(html: str) -> str:
    return re.search(r"<h2>(.*?)</h2>", html).group(1)


@pytest.mark.parametrize("path, body, status, error, field", [
    ("/w/api/next", {"visit_token": "forged"}, 403, "Forbidden", "visit_token"),
    ("/w/api/submit", {"assignment_token": "forged", "answer": {}}, 403, "Forbidden", "assignment_token"),
    ("/w/api/start", {"batch": 999, "worker": "w1"}, 404, "NotFound", "batch"),
    ("/w/api/start", [1, 2], 400, "ServiceError", "body"),
], ids=["bad-visit-token", "bad-assignment-token", "unknown-batch", "body-not-an-object"])
def test_worker_json_errors(sqlite_app, path, body, status, error, field):
    r = sqlite_app.test_client().post(path, json=body)
    assert r.status_code == status
    assert r.get_json() == {"error": error, "message": r.get_json()["message"], "field": field, "status": status}


def test_api_json_errors(sqlite_app, h):
    client = sqlite_app.test_client()
    r = client.get("/api/batches/999", headers=h.AUTH)
    assert r.status_code == 404 and r.get_json() == {
        "error": "NotFound", "message": "batch 999 not found", "field": "batch", "status": 404}
    r = client.get("/api/batches/1/judgments?format=xml", headers=h.AUTH)
    assert r.status_code == 400 and r.get_json()["field"] == "format"
    r = client.get("/api/visits?status=lost", headers=h.AUTH)
    assert r.status_code == 400 and r.get_json()["message"] == "unknown visit status"


def test_worker_pages_show_the_message_page(sqlite_app, h):
    client = sqlite_app.test_client()
    b = h.create_batch(client, kind="label", redundancy=1)
    r = client.get("/w/999?worker=x")
    assert (r.status_code, _title(r.get_data(as_text=True))) == (404, "Not available")
    assert "batch 999 not found" in r.get_data(as_text=True)
    r = client.get(f"/w/{b['id']}?workerId=A&assignmentId=B&turkSubmitTo=https://evil.example.com")
    assert (r.status_code, _title(r.get_data(as_text=True))) == (400, "Invalid link")
    r = client.get("/w/v/forged/instructions")
    assert (r.status_code, _title(r.get_data(as_text=True))) == (403, "Link expired")

    token = re.search(r"/w/v/([^/]+)/", client.get(f"/w/{b['id']}?worker=lab1").location).group(1)
    client.post(f"/w/v/{token}/consent", data={"agree": "yes"})
    html = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    atok = re.search(r'name="assignment_token" value="([^"]+)"', html).group(1)
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": "forged", "client_token": "x" * 12, "label": "a"})
    assert (r.status_code, _title(r.get_data(as_text=True))) == (403, "Link expired")
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "x" * 12,
                                                 "label": "not-a-class"})
    page = r.get_data(as_text=True)
    assert (r.status_code, _title(page)) == (400, "Please check your answer")
    # plain language, and a way back to the same task
    assert "Please choose one of the classes, or “Can&#39;t tell”." in page and "answer.label" not in page
    assert f'href="/w/v/{token}/task"' in page


def test_dashboard_gets_the_plain_error_page(sqlite_app, h):
    client = sqlite_app.test_client()
    b = h.create_batch(client, redundancy=1)
    h.admin_login(client)
    html = client.get(f"/admin/batches/{b['id']}").get_data(as_text=True)
    r = client.post(f"/admin/batches/{b['id']}/status", data={"status": "lost", "csrf_token": h.csrf_in(html)})
    assert r.status_code == 400 and "status must be active|paused|closed" in r.get_data(as_text=True)
    r = client.post("/admin/workers/999/action", data={"action": "flag", "csrf_token": h.csrf_in(html)})
    assert r.status_code == 404 and "worker 999 not found" in r.get_data(as_text=True)
    assert client.get("/admin/batches/999").status_code == 404
