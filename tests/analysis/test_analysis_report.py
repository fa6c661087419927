"""`argus report` end to end on the committed fixtures."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from argus.cli import cli


@pytest.mark.slow
def test_report_cli_on_fixtures(fixtures_dir, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["report", "--judgments", str(fixtures_dir / "judgments.csv"),
                                      "--sheets", str(fixtures_dir / "sheets"), "--out", str(out),
                                      "--data", str(fixtures_dir / "data"), "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert "in `night`, arguments fire on the background" in html
    assert html.count("data:image/png;base64,") == 5  # figures embedded: works offline
    assert "http://" not in html and "https://" not in html
    for name in ("agreement", "workers", "worker_quality", "worker_confusions", "validity_by_rank", "validity_by_domain", "localisation_by_domain",
                 "model_vs_human", "naming", "rank_agreement", "clues", "aggregated_labels"):
        assert (out / "tables" / f"{name}.csv").exists(), name
    for fig in ("agreement", "workers", "validity_by_rank", "localisation_by_domain", "confusions"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000
    workers = pd.read_csv(out / "tables" / "workers.csv").set_index("worker")
    # w5 always answers "cat": the lowest kappa against the others, but 12 label answers are not
    # evidence enough for a flag at P >= 0.95, so nobody is flagged (the old spammer-score rule was)
    assert workers["min_kappa"].idxmin() == "w5" and not workers["flagged"].any()
    assert (workers["action"] == "approve").all()
    quality = pd.read_csv(out / "tables" / "worker_quality.csv")
    w5 = quality[(quality["worker"] == "w5") & (quality["kind"] == "label")].iloc[0]
    assert 0.5 < w5["p_kappa_below"] < 0.95
    assert workers.loc["w5", "gold_accuracy"] == 0.5  # always "cat": right on the 2 cat gold tasks of 4
    mvh = pd.read_csv(out / "tables" / "model_vs_human.csv")
    assert set(mvh["item"]) == {"label", "name"} and (mvh["model"] == "model:toy").all()


def test_report_cli_errors(fixtures_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    pd.read_csv(fixtures_dir / "judgments.csv").drop(columns="label").to_csv(bad, index=False)
    result = CliRunner().invoke(cli, ["report", "--judgments", str(bad), "--sheets", str(fixtures_dir / "sheets"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "missing required column(s) ['label']" in result.output
