"""The API's settings are declared once (api/settings.py, Settings): every field is a flag of
`python -m api` with the field's default, and every flag reaches its field."""

import dataclasses

import pytest

from api.__main__ import build_parser, settings_from
from api.settings import Settings
from occupancy.fleet import Thresholds


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("FIREBASE_API_KEY", "GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_without_flags_every_setting_has_its_fields_default():
    assert settings_from(build_parser().parse_args(["--project", "p"])) == Settings(project="p")


def test_every_setting_has_a_flag_that_reaches_it():
    argv = ["--project", "p", "--private_reads", "--fleet_listener", "--thresholds", "0.1,0.2,0.3,0.4,0.5"]
    argv += ["--privacy_step_pct", "5", "--fleet_cache_s", "0", "--public_precision", "exact"]
    settings = settings_from(build_parser().parse_args(argv))
    assert settings.public_reads is False and settings.fleet_listener is True
    assert settings.thresholds == Thresholds((0.1, 0.2, 0.3, 0.4, 0.5))
    assert (settings.privacy_step_pct, settings.fleet_cache_s, settings.public_precision) == (5, 0.0, "exact")
    flags = {a.dest for a in build_parser()._actions}
    assert {f.name for f in dataclasses.fields(Settings)} <= flags


def test_a_flags_default_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FIREBASE_API_KEY", "web-key")
    assert settings_from(build_parser().parse_args(["--project", "p"])).firebase_api_key == "web-key"


def test_a_bad_value_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--thresholds", "0.5,0.2"])
    assert "thresholds need 5 numbers" in capsys.readouterr().err
