"""Ingest on real bad and odd files: bombs, truncation, disguised HTML, zip escapes and junk, CMYK, 16-bit, alpha, EXIF."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut
from studio.data.ingest import Limits, Refused, SourceFile, collect, load_image, near_duplicates, perceptual_hash


def _source(name, data: bytes) -> SourceFile:
    return SourceFile(name, len(data), lambda: data)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _encode(Image.new("1", (12000, 12000)), "PNG")  # 144 megapixels in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(Refused, match="decompression bomb"):
        load_image(_source("bomb.png", bomb))


def test_pillow_refuses_bigger_bombs_at_open_and_we_say_so():
    bomb = _encode(Image.new("1", (20000, 20000)), "PNG")
    with pytest.raises(Refused, match="decompression bomb"):
        load_image(_source("bomb.png", bomb))


def test_truncated_jpeg_is_refused():
    data = _encode(astronaut(), "JPEG", quality=90)
    with pytest.raises(Refused, match="truncated or corrupt"):
        load_image(_source("cut.jpg", data[: len(data) // 2]))


def test_truncated_jpeg_is_refused_after_face_detection_ran():
    from PIL import ImageFile

    from studio.faces import detect_faces

    detect_faces(Image.new("RGB", (64, 64)))  # imports face_recognition, which flips a PIL global on import
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = _encode(astronaut(), "PNG")
    with pytest.raises(Refused, match="truncated or corrupt"):
        load_image(_source("cut.png", data[: len(data) - 5000]))


def test_html_named_png_is_not_an_image():
    with pytest.raises(Refused, match="not an image"):
        load_image(_source("page.png", b"<!DOCTYPE html><html><body>hello</body></html>"))


def test_other_formats_are_refused_with_the_format():
    with pytest.raises(Refused, match="GIF"):
        load_image(_source("anim.gif", _encode(astronaut(), "GIF")))


def test_file_size_limit():
    data = _encode(astronaut(), "PNG")
    with pytest.raises(Refused, match="limit"):
        load_image(_source("big.png", data), Limits(max_file_bytes=1000))


def test_cmyk_jpeg_becomes_rgb():
    loaded = load_image(_source("cmyk.jpg", _encode(astronaut().convert("CMYK"), "JPEG", quality=95)))
    assert loaded.image.mode == "RGB" and loaded.format == "JPEG"
    assert "CMYK -> RGB" in loaded.notes
    assert np.abs(np.asarray(loaded.image, float) - np.asarray(astronaut(), float)).mean() < 12


def test_16_bit_greyscale_is_scaled_not_clipped():
    ramp = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)  # 0 .. 65532
    loaded = load_image(_source("deep.png", _encode(Image.fromarray(ramp), "PNG")))
    pixels = np.asarray(loaded.image)
    assert loaded.image.mode == "RGB" and pixels.max() == 255 and pixels.min() == 0
    assert 120 < pixels.mean() < 135  # a ramp over the whole range stays mid-grey on average
    assert any("8 bits" in n for n in loaded.notes)


def test_alpha_goes_on_white():
    im = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    im.paste((0, 0, 255, 0), (0, 0, 32, 64))  # left half fully transparent
    loaded = load_image(_source("alpha.png", _encode(im, "PNG")))
    pixels = np.asarray(loaded.image)
    assert tuple(pixels[10, 5]) == (255, 255, 255) and tuple(pixels[10, 50]) == (255, 0, 0)
    assert "transparency placed on white" in loaded.notes


def test_palette_with_transparency_and_webp():
    im = Image.new("RGBA", (32, 32), (0, 128, 0, 255))
    im.paste((0, 0, 0, 0), (0, 0, 16, 32))
    loaded = load_image(_source("pal.png", _encode(im.convert("P"), "PNG", transparency=0)))
    assert loaded.image.mode == "RGB"
    webp = load_image(_source("a.webp", _encode(astronaut(), "WEBP", quality=90)))
    assert webp.format == "WEBP" and webp.image.size == (512, 512)


def test_exif_orientation_is_applied():
    im = astronaut().crop((0, 0, 512, 300))  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    loaded = load_image(_source("rot.jpg", _encode(im, "JPEG", exif=exif, quality=95)))
    assert loaded.image.size == (300, 512)
    assert any("EXIF orientation 6" in n for n in loaded.notes)
    assert loaded.data[:2] == b"\xff\xd8"  # the original bytes are kept untouched


def test_zip_with_escaping_entries_junk_and_nested_folders(tmp_path):
    good = _encode(astronaut(), "JPEG", quality=90)
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("trip/day1/a.jpg", good)
        z.writestr("b.png", _encode(astronaut(), "PNG"))
        z.writestr("../evil.jpg", good)
        z.writestr("/abs.jpg", good)
        z.writestr("__MACOSX/trip/._a.jpg", b"junk")
        z.writestr(".DS_Store", b"junk")
        z.writestr("notes.txt", b"hello")
    files, refused, ignored = collect([path])
    assert [f.name for f in files] == ["upload.zip/b.png", "upload.zip/notes.txt", "upload.zip/trip/day1/a.jpg"]
    assert {r.name for r in refused} == {"upload.zip/../evil.jpg", "upload.zip//abs.jpg"}
    assert all("outside its folder" in r.reason for r in refused)
    assert len(ignored) == 2
    assert load_image(files[2]).sha256 == load_image(_source("x", good)).sha256
    with pytest.raises(Refused, match="not an image"):
        load_image(files[1])


def test_zip_bomb_entry_is_refused(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", b"\0" * (20 * 1024**2))
    files, refused, _ = collect([path])
    assert files == [] and "zip bomb" in refused[0].reason


def test_folder_input_and_same_names_are_told_apart(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        astronaut().save(tmp_path / sub / "same.jpg")
    (tmp_path / "a" / "Thumbs.db").write_bytes(b"x")
    files, refused, ignored = collect([tmp_path / "a" / "same.jpg", tmp_path / "b" / "same.jpg"])
    assert [f.name for f in files] == ["same.jpg", "same.jpg (2)"]
    files, _, ignored = collect([tmp_path])
    assert [f.name for f in files] == ["a/same.jpg", "b/same.jpg"] and [i.name for i in ignored] == ["a/Thumbs.db"]
    with pytest.raises(ValueError, match="input"):
        collect([tmp_path / "missing"])


def test_perceptual_hash_finds_near_duplicates_only():
    a = astronaut()
    reencoded = Image.open(io.BytesIO(_encode(a.resize((300, 300)), "JPEG", quality=70)))
    mirrored = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    other = Image.fromarray(np.asarray(a)[::-1].copy())
    hashes = [perceptual_hash(im) for im in (a, reencoded, mirrored, other)]
    assert near_duplicates(hashes) == {1: 0}


def test_a_malformed_file_only_refuses_itself(tmp_path):
    good = _encode(astronaut(), "PNG")
    broken = bytearray(good)
    broken[16:24] = b"\xff" * 8  # IHDR width and height: absurd values
    files = [_source("a_good.png", good), _source("b_broken.png", bytes(broken)), _source("c_empty.jpg", b"")]
    outcomes = []
    for f in files:
        try:
            outcomes.append(load_image(f).format)
        except Refused as e:
            outcomes.append(str(e).split(" (")[0])
    assert outcomes == ["PNG", "not an image", "not an image"]
