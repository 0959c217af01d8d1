"""A workload's environment: the allow-list, never the control plane's secrets."""

from __future__ import annotations

import os
import sys

from cumulo.control.environment import ALLOW_VAR, workload_env

CONTROL = {
    "PATH": "/usr/bin", "HOME": "/home/op", "LANG": "C.UTF-8", "LC_TIME": "de_DE", "TZ": "UTC",
    "AWS_ACCESS_KEY_ID": "AKIA123", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "CUMULO_DATABASE_URL": "postgresql://u:pw@h/db",
    "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json", "CUMULO_SECRET_KEY": "k", "DATABASE_URL": "x",
}


def test_only_allow_listed_variables_pass_and_the_spec_wins():
    env = workload_env({"EPOCHS": "3", "TZ": "Europe/Paris"}, CONTROL)
    assert env["HOME"] == "/home/op" and env["LANG"] == "C.UTF-8" and env["LC_TIME"] == "de_DE"
    assert env["TZ"] == "Europe/Paris" and env["EPOCHS"] == "3" and env["PYTHONUNBUFFERED"] == "1"
    for secret in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CUMULO_DATABASE_URL",
                   "GOOGLE_APPLICATION_CREDENTIALS", "CUMULO_SECRET_KEY", "DATABASE_URL"):
        assert secret not in env
    assert "s3cr3t" not in repr(env) and "pw@" not in repr(env)


def test_python_is_this_interpreter_first_on_the_path():
    env = workload_env({}, CONTROL)
    assert env["PATH"].split(os.pathsep)[:2] == [os.path.dirname(sys.executable), "/usr/bin"]
    assert workload_env({}, {})["PATH"] == os.path.dirname(sys.executable)


def test_an_operator_can_pass_more_variables_through_by_name():
    env = workload_env({}, {**CONTROL, ALLOW_VAR: "HF_HOME, DATABASE_URL", "HF_HOME": "/models"})
    assert env["HF_HOME"] == "/models" and env["DATABASE_URL"] == "x"
    assert "AWS_SECRET_ACCESS_KEY" not in env and ALLOW_VAR not in env
