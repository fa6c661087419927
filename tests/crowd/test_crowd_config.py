"""Config layers: defaults -> file -> ARGUS_* environment -> test mapping."""

import pytest

from crowd.app import create_app
from crowd.config import DEFAULTS
from crowd.db import get_database


def test_layers(tmp_path, monkeypatch):
    cfg = tmp_path / "argus.cfg"
    cfg.write_text("GOLD_THRESHOLD = 0.9\nTASKS_NOTE = 'from file'\nCONSENT_VERSION = 'file'\n"
                   "STUDY_TITLE = 'file title'\n")
    monkeypatch.setenv("ARGUS_CONFIG", str(cfg))
    monkeypatch.setenv("ARGUS_GOLD_THRESHOLD", "0.8")
    monkeypatch.setenv("ARGUS_AUTO_INIT_DB", "false")
    monkeypatch.setenv("ARGUS_TURK_SUBMIT_HOSTS", "a.example, b.example")
    monkeypatch.setenv("ARGUS_CONSENT_VERSION", "env")
    app = create_app({"CONSENT_VERSION": "test", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "SECRET_KEY": "k"})
    c = app.config
    assert c["MAX_CONTENT_LENGTH"] == DEFAULTS["MAX_CONTENT_LENGTH"]  # default
    assert c["TASKS_NOTE"] == "from file" and c["STUDY_TITLE"] == "file title"  # file
    assert c["GOLD_THRESHOLD"] == 0.8 and c["AUTO_INIT_DB"] is False  # env beats file, typed
    assert c["TURK_SUBMIT_HOSTS"] == ["a.example", "b.example"]
    assert c["CONSENT_VERSION"] == "test"  # test mapping beats env
    assert not (tmp_path / "x.db").exists() or (tmp_path / "x.db").stat().st_size == 0  # AUTO_INIT_DB off
    get_database(app).engine.dispose()


def test_bad_env_value_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ARGUS_GOLD_MIN_ANSWERS", "many")
    with pytest.raises(ValueError, match="ARGUS_GOLD_MIN_ANSWERS"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})


def test_secret_key_is_generated_once_per_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("ARGUS_INSTANCE_PATH", str(tmp_path / "inst"))
    a = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    b = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert a.config["SECRET_KEY"] == b.config["SECRET_KEY"] and len(a.config["SECRET_KEY"]) > 40
    assert oct((tmp_path / "inst" / "secret_key").stat().st_mode & 0o777) == "0o600"
    for app in (a, b):
        get_database(app).engine.dispose()
