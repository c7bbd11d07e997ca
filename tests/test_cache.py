"""One cache folder, moved by one environment variable."""

from __future__ import annotations

from pathlib import Path

from ssm_signal.cache import ENV_CACHE_DIR, cache_dir


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "ssm-signal"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("aoti") == tmp_path / "xdg" / "ssm-signal" / "aoti"
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine" and cache_dir("mlflow") == tmp_path / "mine" / "mlflow"
