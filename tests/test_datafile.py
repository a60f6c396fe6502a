"""avlib.data.datafile: datafiles (path rule, validation) and label CSVs."""

from __future__ import annotations

import json

import pytest
import torch

from avlib.data.datafile import (
    Entry,
    dataset_root,
    read_datafile,
    read_label_csv,
    write_datafile,
    write_label_csv,
)


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_relative_paths_resolve_against_dataset_root(tmp_path):
    df = write_json(tmp_path / "ds" / "datafiles" / "train.json", {"data": [
        {"video_id": "a", "wav": "audio/a.wav", "video_path": "frames", "labels": "/m/1,/m/2"},
        {"video_id": "b", "wav": "/abs/b.wav", "video_path": "/abs/frames/", "labels": ""},
    ]})
    assert dataset_root(df) == (tmp_path / "ds").resolve()
    a, b = read_datafile(df)
    assert a.wav == str((tmp_path / "ds" / "audio" / "a.wav").resolve())
    assert a.video_path == str((tmp_path / "ds" / "frames").resolve())
    assert a.labels == ("/m/1", "/m/2") and b.labels == ()
    assert b.wav == "/abs/b.wav" and b.video_path.rstrip("/") == "/abs/frames"
    assert a.frame_path(5) == (tmp_path / "ds" / "frames" / "frame_5" / "a.jpg").resolve()


def test_write_read_roundtrip_relative_inside_root(tmp_path):
    root = tmp_path / "ds"
    entries = [Entry("x", str(root / "audio" / "x.wav"), str(root / "frames"), ("/m/a",)),
               Entry("y", "/elsewhere/y.wav", "/elsewhere/frames", ())]
    df = write_datafile(root / "datafiles" / "val.json", entries)
    raw = json.loads(df.read_text())["data"]
    assert raw[0] == {"video_id": "x", "wav": "audio/x.wav", "video_path": "frames", "labels": "/m/a"}
    assert raw[1]["wav"] == "/elsewhere/y.wav"  # outside the root: stays absolute
    back = read_datafile(df)
    assert [e.video_id for e in back] == ["x", "y"]
    assert back[0].wav == str((root / "audio" / "x.wav").resolve())
    # moving the dataset folder keeps relative paths valid
    moved = tmp_path / "moved"
    root.rename(moved)
    moved_wav = read_datafile(moved / "datafiles" / "val.json")[0].wav
    assert moved_wav == str((moved / "audio" / "x.wav").resolve())


def test_write_datafile_append_replaces_same_id(tmp_path):
    df = tmp_path / "datafiles" / "custom.json"
    write_datafile(df, [Entry("a", "a.wav", "frames", ("l1",)), Entry("b", "b.wav", "frames", ())])
    write_datafile(df, [{"video_id": "b", "wav": "b2.wav", "video_path": "frames", "labels": "l2"},
                        Entry("c", "c.wav", "frames", ())], append=True)
    got = {e.video_id: e for e in read_datafile(df)}
    assert sorted(got) == ["a", "b", "c"] and got["b"].labels == ("l2",) and got["b"].wav.endswith("b2.wav")


def test_labels_as_list(tmp_path):
    df = write_json(tmp_path / "datafiles" / "t.json",
                    {"data": [{"video_id": "a", "wav": "a.wav", "video_path": "f",
                               "labels": ["m1", " m2 "]}]})
    assert read_datafile(df)[0].labels == ("m1", "m2")


@pytest.mark.parametrize("missing", ["video_id", "wav", "video_path", "labels"])
def test_missing_key_names_file_entry_and_key(tmp_path, missing):
    item = {"video_id": "clip7", "wav": "a.wav", "video_path": "f", "labels": ""}
    del item[missing]
    ok = {"video_id": "ok", "wav": "o.wav", "video_path": "f", "labels": ""}
    df = write_json(tmp_path / "datafiles" / "broken.json", {"data": [ok, item]})
    with pytest.raises(ValueError, match=rf"broken\.json.*entry #1.*'{missing}'"):
        read_datafile(df)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ('{"items": []}', '"data" list'),
    ('[1, 2]', '"data" list'),
    ('{"data": [5]}', "entry #0"),
    ('{"data": [{"video_id": "a", "wav": 3, "video_path": "f", "labels": ""}]}', "'wav' must be a string"),
    ('{"data": [{"video_id": "a", "wav": "a", "video_path": "f", "labels": 3}]}', "labels"),
    ('{"data": [{"video_id": "", "wav": "a", "video_path": "f", "labels": ""}]}', "empty"),
])
def test_bad_datafiles(tmp_path, content, match):
    p = tmp_path / "datafiles" / "bad.json"
    p.parent.mkdir()
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_datafile(p)


def test_duplicate_ids_and_missing_file(tmp_path):
    e = {"video_id": "a", "wav": "a.wav", "video_path": "f", "labels": ""}
    df = write_json(tmp_path / "datafiles" / "dup.json", {"data": [e, e]})
    with pytest.raises(ValueError, match="appears twice"):
        read_datafile(df)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_datafile(tmp_path / "nope.json")


# ------------------------------------------------------------------------------------------------------------
# label CSV
# ------------------------------------------------------------------------------------------------------------
def test_label_csv_roundtrip_and_encode(tmp_path):
    p = write_label_csv(tmp_path / "labels.csv", ["/m/a", "/m/b", "/m/c"], ["Piano", "Violin, solo", "Drums"])
    assert p.read_text().splitlines()[0] == "index,mid,display_name"
    ls = read_label_csv(p)
    assert len(ls) == 3 and ls.mids == ("/m/a", "/m/b", "/m/c") and ls.name(1) == "Violin, solo"
    assert ls.index("/m/c") == 2
    assert torch.equal(ls.encode(["/m/a", "/m/c"]), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(ls.encode([]), torch.zeros(3))


def test_unknown_label_is_a_clear_error(tmp_path):
    ls = read_label_csv(write_label_csv(tmp_path / "labels.csv", ["/m/a"]))
    with pytest.raises(KeyError, match=r"clip9.*'/m/zzz'.*labels\.csv"):
        ls.encode(["/m/zzz"], where="video_id clip9")


@pytest.mark.parametrize("text,match", [
    ("", "header"),
    ("idx,mid,name\n0,a,A\n", "header"),
    ("index,mid,display_name\n1,a,A\n", "should be 0"),
    ("index,mid,display_name\n0,a,A\n1,a,B\n", "twice"),
    ("index,mid,display_name\n0,a\n", "3 fields"),
    ("index,mid,display_name\n", "no classes"),
])
def test_bad_label_csv(tmp_path, text, match):
    p = tmp_path / "labels.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_label_csv(p)


def test_label_csv_quoted_reference_style(tmp_path):
    p = tmp_path / "class_labels_indices.csv"
    p.write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n\n')
    ls = read_label_csv(p)
    assert ls.names == ("Speech", "Male speech, man speaking")
    with pytest.raises(FileNotFoundError, match="index,mid,display_name"):
        read_label_csv(tmp_path / "missing.csv")
