"""The farm's pure parts (phone selectors, labels, token policy) and the join command's refusals."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from android_runtime.device_info import device_props
from android_runtime.farm.node import require_token_auth
from android_runtime.farm.phones import Phone, check_selector, matches, phone_from_props, resource_name
from configs.errors import DeviceError, UserError
from tests.conftest import ROOT

SD888 = Phone(serial="R5CR10ABCDE", model="SM-G991B", soc="SM8350", board="lahaina", android="14", abi="arm64-v8a",
              node="lab1")
PIXEL = Phone(serial="192.168.1.20:5555", model="Pixel 6", soc="Tensor", board="gs101", android="13",
              abi="arm64-v8a", node="lab2")


@pytest.mark.parametrize("selector,want", [
    ("", {"R5CR10ABCDE", "192.168.1.20:5555"}), ("any", {"R5CR10ABCDE", "192.168.1.20:5555"}),
    ("soc:sm8350", {"R5CR10ABCDE"}), ("soc:lahaina", {"R5CR10ABCDE"}), ("soc:Tensor", {"192.168.1.20:5555"}),
    ("model:pixel 6", {"192.168.1.20:5555"}), ("android:14", {"R5CR10ABCDE"}),
    ("192.168.1.20:5555", {"192.168.1.20:5555"}), ("R5CR10", set()), ("soc:sd888", set()),
])
def test_selector_matches_serial_soc_board_model_android(selector, want):
    assert {p.serial for p in (SD888, PIXEL) if matches(p, selector)} == want


def test_selector_kind_without_name_is_refused_naming_the_key():
    with pytest.raises(UserError, match=r"cfg.yaml: DEPLOY.PHONE = 'soc:': soc:NAME needs a name"):
        check_selector("soc:", "cfg.yaml: DEPLOY.PHONE")
    assert check_selector(" soc:sd888 ") == "soc:sd888"


def test_phone_labels_come_from_getprop_and_round_trip_through_the_store():
    props = device_props({"ro.product.model": "SM-G991B", "ro.board.platform": "lahaina", "ro.soc.model": "SM8350",
                          "ro.build.version.release": "14", "ro.product.cpu.abi": "arm64-v8a"})
    phone = phone_from_props("R5CR10ABCDE", props, "lab1")
    assert phone == SD888 and Phone.from_json(phone.to_json()) == phone
    assert phone.resource == resource_name("R5CR10ABCDE") == "phone:R5CR10ABCDE"
    assert phone.label() == "R5CR10ABCDE (SM-G991B, SM8350, Android 14) on lab1"


def test_token_authentication_cannot_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(UserError, match="RAY_AUTH_MODE = 'disabled': the farm runs with Ray's token authentication"):
        require_token_auth()
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "none"))
    with pytest.raises(DeviceError, match="no Ray auth token on this host"):
        require_token_auth()
    assert os.environ["RAY_AUTH_MODE"] == "token"


@pytest.mark.device
def test_join_without_a_phone_exits_3_with_one_line(server, tmp_path):
    (tmp_path / "token").write_text("x" * 32)
    env = {**os.environ, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token"), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_AUTH_MODE", None)
    done = subprocess.run([sys.executable, "-m", "android_runtime.farm", "join", "--address", "127.0.0.2:1",
                           "--adb_host", f"127.0.0.1:{server.port}"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT))
    assert done.returncode == 3
    assert done.stderr.strip() == (f"error: no phone in state 'device' on the adb server 127.0.0.1:{server.port}: "
                                   "attach one (`adb devices` lists them) or pass --serial")
