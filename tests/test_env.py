import os

import numpy as np
import pytest
import torch

import avlib.env as env


def test_profiles_are_consistent():
    for name in env.PROFILES:
        p = env.profile(name)
        assert p.name == name
        assert p.target_length % 16 == 0, "fbank length must be a multiple of the patch size"
        assert p.image_size % 16 == 0
        assert set(p.clips_per_class) == {"unlabeled", "train", "val", "test"}
        assert p.clips_per_class["unlabeled"] >= p.clips_per_class["train"]
    assert env.profile("paper").model == "base"
    assert env.profile("ci").clips_per_class["train"] < env.profile("course").clips_per_class["train"]


def test_active_profile_from_environment(monkeypatch):
    monkeypatch.setenv("AVLIB_PROFILE", "paper")
    assert env.profile().name == "paper"
    monkeypatch.setenv("AVLIB_PROFILE", "nope")
    with pytest.raises(ValueError, match="AVLIB_PROFILE='nope'.*ci, course, paper"):
        env.profile()


def test_setup_seeds_and_reports(monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_PROFILE", "ci")
    monkeypatch.setenv("AVLIB_DEVICE", "cpu")
    threads = torch.get_num_threads()
    try:
        s = env.setup(seed=3, threads=1)
        a = (torch.rand(3), np.random.rand(), torch.rand(2, generator=s.generator))
        s2 = env.setup(seed=3, threads=1, verbose=False)
        b = (torch.rand(3), np.random.rand(), torch.rand(2, generator=s2.generator))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and torch.equal(a[2], b[2])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "profile=ci" in out[0] and "device=cpu" in out[0] and "threads=1" in out[0]
    assert s.device == torch.device("cpu")


def test_device_override_is_checked(monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setenv("AVLIB_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            env.pick_device()
    monkeypatch.setenv("AVLIB_DEVICE", "cpu")
    assert env.pick_device() == torch.device("cpu")


def test_threads_from_environment(monkeypatch):
    monkeypatch.setenv("AVLIB_THREADS", "3")
    assert env.default_threads() == 3
    monkeypatch.delenv("AVLIB_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert env.default_threads() == 1


def test_check_reports_every_package(capsys):
    ok = env.check()
    out = capsys.readouterr().out
    for _, (dist, _) in env.REQUIRED.items():
        assert f"] {dist}" in out
    assert ok, out


def test_data_root_override(monkeypatch, tmp_path):
    monkeypatch.setenv("AVLIB_DATA", str(tmp_path))
    assert env.data_root() == tmp_path
    monkeypatch.delenv("AVLIB_DATA")
    assert env.data_root() == env.ROOT / "data" / "generated"
    assert os.path.isdir(env.ROOT / "avlib")


def test_display_path_is_relative_inside_the_repo(tmp_path):
    assert env.display_path(env.ROOT / "data" / "generated" / "ci") == "data/generated/ci"
    assert env.display_path(tmp_path) == str(tmp_path)
