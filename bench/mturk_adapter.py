"""What the MTurk adapter's money safety costs: the reconciling service layer vs bare boto3 calls.

Both sides talk to the same in-process fake MTurk endpoint (tests/crowd/mturk/fake_mturk.py) through
the real boto3 client, so the ratio isolates Argus's own work per call: the write-ahead rows,
the tokens, the reconciliation and the database commits. The floor is a bare loop of the same
boto3 calls, with no database. Nothing reaches the network.

    python bench/mturk_adapter.py [--quick]

Prints one JSON line per figure and writes bench/results/mturk_adapter.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "crowd" / "mturk"))  # the fake endpoint

os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIAARGUSBENCHDUMMY")  # dummies: only the fake is called
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "argus-bench-dummy")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def setup(tmp: Path, n_hits: int):
    from PIL import Image

    from crowd import service as S
    from crowd.app import create_app
    from crowd.db import get_database
    from crowd.providers.mturk_client import MTurkClient
    from crowd.providers.mturk_service import MTurkService
    from fake_mturk import FakeMTurk

    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": f"sqlite:///{tmp / 'argus.db'}"})
    db = get_database(app)
    img = tmp / "img.png"
    Image.new("RGB", (8, 8)).save(img)
    with db.transaction() as s:
        bid = S.create_label_batch(s, [str(img)], ["a", "b"], redundancy=1, tasks_per_visit=1, reward_cents=10).id
    fake = FakeMTurk()
    fake.start()
    client = MTurkClient.connect("sandbox", endpoint_url=fake.url)
    return MTurkService(db, client, progress=False), client, fake, bid


def run(quick: bool) -> dict:
    from crowd.providers.mturk_client import external_question_xml, unique_request_token
    from crowd.providers.mturk_service import LaunchSettings

    n_hits = 10 if quick else 60
    per_hit = 9
    results = []

    def emit(rec):
        print(json.dumps(rec), flush=True)
        results.append(rec)

    with tempfile.TemporaryDirectory() as t1, tempfile.TemporaryDirectory() as t2:
        svc, _, fake, bid = setup(Path(t1), n_hits)
        bare_svc, bare, bare_fake, _ = setup(Path(t2), n_hits)
        settings = LaunchSettings(entry_url="https://argus.example.org/w/1", title="t", description="d",
                                  assignments=n_hits * per_hit, per_hit=per_hit)
        try:
            # -- launch: Argus (qualification, HIT type, write-ahead rows, HITs) vs bare CreateHITWithHITType
            t = time.perf_counter()
            res = svc.launch(bid, settings, dry_run=False)
            argus_s = time.perf_counter() - t
            question = external_question_xml(settings.entry_url)
            t = time.perf_counter()
            hit_type = bare.create_hit_type("t", "d", "0.10", 3600, 86400)
            bare_hits = [bare.create_hit(hit_type, question, per_hit, 86400, unique_request_token("b", i))["HITId"]
                         for i in range(n_hits)]
            bare_s = time.perf_counter() - t
            emit({"figure": "launch", "hits": n_hits, "argus_s": round(argus_s, 3), "bare_boto3_s": round(bare_s, 3),
                  "overhead_ratio": round(argus_s / bare_s, 2), "argus_per_hit_ms": round(1000 * argus_s / n_hits, 1)})

            # workers fill every slot (directly in the fakes; the Argus server is not part of this figure)
            for f, hits in ((fake, [h["hit_id"] for h in res.hits]), (bare_fake, bare_hits)):
                for h in hits:
                    for w in range(per_hit):
                        f.accept(h, f"AW{w:03d}")
                for a in f.assignments.values():
                    a["AssignmentStatus"], a["SubmitTime"] = "Submitted", time.time()
            n_asg = n_hits * per_hit

            # -- sync: Argus (GetHIT + all pages + upserts + qualification grants) vs bare GetHIT + list
            t = time.perf_counter()
            svc.sync(bid)
            argus_s = time.perf_counter() - t
            t = time.perf_counter()
            for h in bare_hits:
                bare.get_hit(h)
                bare.list_assignments(h)
            bare_s = time.perf_counter() - t
            emit({"figure": "sync", "hits": n_hits, "assignments": n_asg, "argus_s": round(argus_s, 3),
                  "bare_boto3_s": round(bare_s, 3), "overhead_ratio": round(argus_s / bare_s, 2),
                  "note": "Argus also grants the participated qualification to each new worker"})

            # -- approve: Argus (decision first, then ApproveAssignment, then status) vs bare ApproveAssignment
            ids = sorted(fake.assignments)
            t = time.perf_counter()
            svc.approve(ids)
            argus_s = time.perf_counter() - t
            t = time.perf_counter()
            for a in sorted(bare_fake.assignments):
                bare.approve(a)
            bare_s = time.perf_counter() - t
            emit({"figure": "approve", "assignments": n_asg, "argus_s": round(argus_s, 3),
                  "bare_boto3_s": round(bare_s, 3), "overhead_ratio": round(argus_s / bare_s, 2)})

            # -- bonus: Argus (ledger rows, ListBonusPayments check, SendBonus with token) vs bare SendBonus
            plan = svc.plan_bonuses(bid, amount="0.05")
            t = time.perf_counter()
            svc.bonus(bid, plan, "bench", dry_run=False)
            argus_s = time.perf_counter() - t
            t = time.perf_counter()
            for a in sorted(bare_fake.assignments):
                bare.send_bonus(bare_fake.assignments[a]["WorkerId"], a, "0.05", "bench", unique_request_token("bb", a))
            bare_s = time.perf_counter() - t
            emit({"figure": "bonus", "bonuses": len(plan), "argus_s": round(argus_s, 3),
                  "bare_boto3_s": round(bare_s, 3), "overhead_ratio": round(argus_s / bare_s, 2)})
            assert len(fake.hits) == n_hits and len(fake.bonuses) == n_asg  # no duplicate, no double payment
        finally:
            fake.stop()
            bare_fake.stop()
    return {"bench": "mturk_adapter", "quick": quick, "machine": machine(),
            "note": "CPU only, on a machine shared with other jobs (2 cores); both sides call the same local fake "
                    "MTurk endpoint, so ratios show Argus's own per-call cost, not MTurk's latency "
                    "(typically 100-300 ms per real call, which dwarfs it).",
            "results": results}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 HITs instead of 60")
    args = ap.parse_args()
    out = run(args.quick)
    path = ROOT / "bench" / "results" / "mturk_adapter.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
