"""`python -m stream.training.prepare`: real PyAV videos through the serving crop unit (real MediaPipe) into crops and a
manifest; resuming, unreadable videos, --max-frames, the published dataset layouts and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.prepared import SERVING_CROP_GEOMETRY, load_crops, read_manifest
from model.preprocess import resize_crop
from stream.capture.decoding import decode_frames, open_container
from stream.capture.references import parse_source
from stream.config import Settings, SourceOptions
from stream.faces.cropper import build_cropper, crop_geometry
from stream.records import Frame
from stream.training import prepare
from stream.training.datasets import DatasetError, find_dataset
from tests import train_flow
from tests.train_sets import celeb_df_tree, dfdc_tree, faceforensics_tree, write_clip


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: "), err
    return err


def test_serving_crop_geometry_is_the_one_training_expects() -> None:
    assert crop_geometry(Settings().faces) == SERVING_CROP_GEOMETRY


def test_prepared_set_has_every_face_cut_as_serving_cuts_it() -> None:
    manifest = read_manifest(train_flow.prepared())
    assert manifest.layout == "labels.csv" and manifest.crop_geometry == SERVING_CROP_GEOMETRY
    assert len(manifest.videos) == 2 * train_flow.CLIPS and not manifest.unreadable
    assert {v.label for v in manifest.videos} == {"REAL", "FAKE"}
    assert {v.group for v in manifest.videos if v.file.endswith("_0.mp4")} == {"person0"}
    confirm = Settings().faces.confirm_frames
    for video in manifest.videos:
        assert video.frames_read == train_flow.FRAMES
        assert len(video.tracks) == 1, video  # one face, one id
        assert video.tracks[0].crops >= train_flow.FRAMES - confirm - 1  # MediaPipe may miss one frame
        crops = load_crops(manifest, video)[video.tracks[0].track_id]
        assert crops.dtype == np.uint8 and crops.shape[1:] == (112, 112, 3)

    # Parity: the crops are exactly what the live pipeline's crop unit gives for the same frames.
    video = manifest.videos[0]
    path = train_flow.labelled() / video.file
    spec = parse_source(str(path))
    cropper = build_cropper("parity", Settings())
    expected = []
    for index, decoded in enumerate(decode_frames(open_container(spec, SourceOptions()), spec)):
        for crop in cropper.crops(Frame("parity", index, 0.0, decoded.t_media, decoded.image_bgr)):
            expected.append(resize_crop(crop.image_bgr, 112).permute(1, 2, 0).numpy())
    cropper.close()
    np.testing.assert_array_equal(load_crops(manifest, video)[video.tracks[0].track_id], np.stack(expected))


def test_resume_skips_prepared_videos_and_unreadable_ones_are_listed(tmp_path, capsys) -> None:
    source = tmp_path / "set"
    write_clip(source / "a.mp4", 0, False, 8)
    write_clip(source / "b.mp4", 1, True, 8)
    (source / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    (source / "labels.csv").write_text("a.mp4,REAL\n")
    out = tmp_path / "out"
    assert prepare.main([str(source), str(out), "--no-progress", "--max-frames", "6"]) == 0
    first = read_manifest(out)
    assert [v.file for v in first.videos] == ["a.mp4"] and first.videos[0].frames_read == 6
    stamp = (out / first.videos[0].crops_file).stat().st_mtime_ns

    (source / "labels.csv").write_text("file,label,group\na.mp4,REAL,p\nb.mp4,FAKE,p\nbroken.mp4,FAKE,q\n")
    capsys.readouterr()
    assert prepare.main([str(source), str(out), "--no-progress", "--max-frames", "6"]) == 0
    captured = capsys.readouterr()
    assert "resuming: 1 videos already prepared, 2 to go" in captured.err
    assert "skipped (unreadable): broken.mp4" in captured.err
    manifest = read_manifest(out)
    assert sorted(v.file for v in manifest.videos) == ["a.mp4", "b.mp4"]
    assert [u.file for u in manifest.unreadable] == ["broken.mp4"]
    assert (out / first.videos[0].crops_file).stat().st_mtime_ns == stamp  # not cut again
    assert all(v.frames_read == 6 for v in manifest.videos)

    assert prepare.main([str(source), str(out), "--no-progress", "--max-frames", "7"]) == 2
    assert "--max-frames 6, not 7" in error_line(capsys)


def test_faceforensics_layout_groups_a_fake_with_its_sources(tmp_path) -> None:
    dataset = find_dataset(faceforensics_tree(tmp_path / "ffpp", frames=2))
    assert dataset.layout == "faceforensics++"
    by_file = {Path(v.file).name: v for v in dataset.videos}
    assert {n: v.label for n, v in by_file.items()} == {
        "000.mp4": "REAL",
        "003.mp4": "REAL",
        "010.mp4": "REAL",
        "000_003.mp4": "FAKE",
        "003_000.mp4": "FAKE",
    }
    linked = {by_file[n].group for n in ("000.mp4", "003.mp4", "000_003.mp4", "003_000.mp4")}
    assert len(linked) == 1 and by_file["010.mp4"].group not in linked


def test_celeb_df_layout_uses_its_official_test_list(tmp_path) -> None:
    dataset = find_dataset(celeb_df_tree(tmp_path / "celeb", frames=2))
    assert dataset.layout == "celeb-df-v2"
    by_file = {v.file: v for v in dataset.videos}
    assert {f for f, v in by_file.items() if v.split == "test"} == {
        "Celeb-real/id1_0000.mp4",
        "Celeb-synthesis/id1_id0_0000.mp4",
    }
    assert by_file["Celeb-synthesis/id0_id1_0000.mp4"].group == by_file["Celeb-real/id0_0000.mp4"].group
    assert by_file["Celeb-synthesis/id0_id1_0000.mp4"].label == "FAKE"
    assert by_file["YouTube-real/00170.mp4"].label == "REAL"


def test_dfdc_layout_groups_by_original_and_skips_absent_videos(tmp_path) -> None:
    dataset = find_dataset(dfdc_tree(tmp_path / "dfdc", frames=2))
    assert dataset.layout == "dfdc"
    by_name = {Path(v.file).name: v for v in dataset.videos}
    assert sorted(by_name) == ["aaa.mp4", "bbb.mp4", "ccc.mp4"]  # zzz.mp4 is listed but absent
    assert by_name["bbb.mp4"].group == by_name["aaa.mp4"].group != by_name["ccc.mp4"].group


def test_prepare_recognises_a_published_layout(tmp_path, capsys) -> None:
    root = celeb_df_tree(tmp_path / "celeb", frames=6)
    out = tmp_path / "out"
    assert prepare.main([str(root), str(out), "--no-progress"]) == 0
    assert "(celeb-df-v2)" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest.layout == "celeb-df-v2" and len(manifest.videos) == 5
    assert {v.file for v in manifest.videos if v.split == "test"} == {
        "Celeb-real/id1_0000.mp4",
        "Celeb-synthesis/id1_id0_0000.mp4",
    }
    assert json.loads((out / "manifest.json").read_text())["schema"] == "deepfake-stream/prepared/1"


@pytest.mark.parametrize(
    ("csv", "expected"),
    [
        ("a.mp4,REAL\nmissing.mp4,FAKE\n", "names 1 missing file(s): missing.mp4"),
        ("a.mp4,FAKED\n", "label 'FAKED' is neither REAL nor FAKE"),
        ("file,label\n", "lists no videos"),
        ("a.mp4\n", "expected file,label[,group]"),
    ],
)
def test_bad_labels_csv_is_one_line(tmp_path, capsys, csv: str, expected: str) -> None:
    source = tmp_path / "set"
    write_clip(source / "a.mp4", 0, False, 2)
    (source / "labels.csv").write_text(csv)
    assert prepare.main([str(source), str(tmp_path / "out"), "--no-progress"]) == 2
    assert expected in error_line(capsys)


def test_unknown_layout_and_missing_source_are_one_line(tmp_path, capsys) -> None:
    (tmp_path / "videos").mkdir()
    shutil.copy(write_clip(tmp_path / "a.mp4", 0, False, 2), tmp_path / "videos" / "a.mp4")
    assert prepare.main([str(tmp_path / "videos"), str(tmp_path / "out")]) == 2
    assert "in no known layout" in error_line(capsys)
    assert prepare.main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "no such folder" in error_line(capsys)
    with pytest.raises(DatasetError, match="not a folder"):
        find_dataset(tmp_path / "a.mp4")
    with pytest.raises(SystemExit) as exit_info:
        prepare.main([str(tmp_path / "videos"), str(tmp_path / "out"), "--max-frames", "0"])
    assert exit_info.value.code == 2 and "must be at least 1" in error_line(capsys)
