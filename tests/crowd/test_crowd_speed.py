"""Speed checks: each kind's minimum plausible answer time (set per batch or server, else 0.2 x
the batch's median of per-worker medians) flags judgments and workers, in the export, the
worker stats and the dashboard; SQLite and PostgreSQL."""

import csv
import io

import pytest

TIMES = {"w1": [10, 10, 10], "w2": [12, 12, 12], "w3": [8, 8, 8], "w4": [0.5, 0.6, 9]}


def _run(client, h, **body):
    b = h.create_batch(client, kind="label", redundancy=4, tasks_per_visit=3, **body)
    for worker, times in TIMES.items():
        w = h.WorkerClient(client, b["id"], worker).start()
        for t in times:
            n = w.next()
            status, _ = w.submit(n["assignment_token"], h.answer_for(n["task"]), duration_s=t)
            assert status == 201
    rows = client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH).get_json()["rows"]
    stats = client.get(f"/api/batches/{b['id']}/workers", headers=h.AUTH).get_json()["workers"]
    return b, rows, {s["worker"]: s for s in stats}


def test_threshold_from_the_batchs_own_times_flags_answers_and_workers(client, h):
    b, rows, stats = _run(client, h)
    # worker medians 10, 12, 8, 0.6 -> median 9.0 -> 0.2 x 9.0 = 1.8 s
    assert sorted((r["worker"], r["duration_s"]) for r in rows if r["too_fast"]) == [("w4", 0.5), ("w4", 0.6)]
    assert {w: (s["too_fast"], s["flag_fast"]) for w, s in stats.items()} == {
        "w1": (0, False), "w2": (0, False), "w3": (0, False), "w4": (2, True)}
    assert stats["w4"]["too_fast_share"] == pytest.approx(2 / 3, abs=1e-4)
    csv_text = client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH).get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(csv_text)))
    assert "too_fast" in table[0] and sum(r["too_fast"] == "True" for r in table) == 2
    h.admin_login(client)
    page = client.get(f"/admin/batches/{b['id']}").get_data(as_text=True)
    assert "label:\n1.8 s (0.2 × median 9.0 s)" in page and '<span class="tag flagged">fast</span>' in page


def test_minimum_set_for_the_batch_overrides_the_median(client, h):
    _, rows, stats = _run(client, h, speed_min_seconds={"label": 9.5})
    assert sorted(r["worker"] for r in rows if r["too_fast"]) == ["w3"] * 3 + ["w4"] * 3
    assert sorted(w for w, s in stats.items() if s["flag_fast"]) == ["w3", "w4"]


def test_server_setting_and_too_few_workers(app, client, h):
    app.config["SPEED_MIN_SECONDS"] = {"label": 8.5}
    _, rows, _ = _run(client, h)
    assert sorted(r["worker"] for r in rows if r["too_fast"]) == ["w3"] * 3 + ["w4"] * 2
    app.config["SPEED_MIN_SECONDS"] = {}
    b = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=3)
    for worker in ("a", "b"):  # two workers: no threshold yet, nothing flagged
        w = h.WorkerClient(client, b["id"], worker).start()
        for _ in range(3):
            n = w.next()
            w.submit(n["assignment_token"], h.answer_for(n["task"]), duration_s=0.1 if worker == "a" else 20)
    rows = client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH).get_json()["rows"]
    assert len(rows) == 6 and not any(r["too_fast"] for r in rows)


def test_bad_speed_settings_name_the_field(client, h):
    for body, field in (({"speed_min_seconds": {"poetry": 2}}, "speed_min_seconds"),
                        ({"speed_min_seconds": {"label": -1}}, "speed_min_seconds"),
                        ({"speed_fast_ratio": 0}, "speed_fast_ratio")):
        r = client.post("/api/batches", json={"sheets_dir": str(h.SHEETS), "kind": "label", **body}, headers=h.AUTH)
        assert r.status_code == 400 and r.get_json()["field"] == field, body
