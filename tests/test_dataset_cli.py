"""`python -m studio dataset ...`: prepare prints kept / refused / flagged, list and show, bad arguments exit 2."""

import zipfile

import pytest

from fixtures_faces import astronaut_variants, hopper
from studio.cli import main


@pytest.fixture
def upload(tmp_path):
    """A zip as users send them: nested folders, OS junk, an escaping entry, a fake image, and one outlier."""
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i, im in enumerate(astronaut_variants(3)):
            im.save(tmp_path / f"a{i}.jpg", quality=90)
            z.write(tmp_path / f"a{i}.jpg", f"holiday/day{i}/a{i}.jpg")
        hopper().save(tmp_path / "h.jpg", quality=90)
        z.write(tmp_path / "h.jpg", "holiday/h.jpg")
        z.writestr("../../etc/passwd.jpg", b"x")
        z.writestr("__MACOSX/holiday/._a0.jpg", b"x")
        z.writestr("holiday/fake.png", b"<html></html>")
    return path


def test_prepare_list_show_check(tmp_path, upload, capsys):
    root = ["--root", str(tmp_path), "--offline"]
    code = main(root + ["dataset", "prepare", "--input", str(upload), "--name", "trip", "--trigger", "ohwx",
                        "--size", "512", "--blur-bystanders", "--tolerance", "0.4"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("dataset trip: 4 kept, 2 refused, ")
    assert "refused  photos.zip/../../etc/passwd.jpg: zip entry points outside its folder" in out
    assert "refused  photos.zip/holiday/fake.png: not an image" in out
    assert "(photos.zip/holiday/h.jpg): far from set" in out and "ignored  photos.zip/__MACOSX" in out

    assert main(root + ["dataset", "list"]) == 0
    assert capsys.readouterr().out.startswith("trip\t4 pictures\t512 px\ttrigger ohwx")
    assert main(root + ["dataset", "show", "trip"]) == 0
    shown = capsys.readouterr().out
    assert "0001.png\tphotos.zip/holiday/day0/a0.jpg\t" in shown and "ohwx person, a photo" in shown

    assert main(root + ["dataset", "check", "trip", "--drop"]) == 0
    checked = capsys.readouterr().out
    assert checked.splitlines()[0].startswith("0004.png\tphotos.zip/holiday/h.jpg\t0.6")
    assert "dropped 1: 0004.png" in checked
    assert main(root + ["dataset", "export", "trip"]) == 0
    assert zipfile.is_zipfile(capsys.readouterr().out.strip())
    assert main(root + ["dataset", "delete", "trip"]) == 0
    assert main(root + ["dataset", "show", "trip"]) == 2


@pytest.mark.parametrize("argv", [
    ["dataset", "prepare", "--input", "x", "--name", "n"],  # no --trigger
    ["dataset", "prepare", "--input", "x", "--name", "n", "--trigger", "t", "--size", "300"],
    ["dataset", "prepare", "--input", "x", "--name", "n", "--trigger", "t", "--tolerance", "high"],
    ["dataset", "prepare", "--input", "x", "--name", "n", "--trigger", "t", "--captioner", "gpt"],
    ["dataset", "frobnicate"],
])
def test_bad_arguments_exit_2(argv, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["--root", str(tmp_path)] + argv)
    assert err.value.code == 2


def test_bad_values_exit_2_with_one_line(tmp_path, capsys):
    base = ["--root", str(tmp_path), "dataset", "prepare", "--size", "512", "--name", "n"]
    assert main(base + ["--input", str(tmp_path / "missing"), "--trigger", "ohwx"]) == 2
    assert "`input`" in capsys.readouterr().err
    assert main(base + ["--input", str(tmp_path), "--trigger", "two words"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`trigger`" in err
