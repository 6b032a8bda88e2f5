"""Inputs refused before they cost memory, and messages that say what happened (issue 13): a pixel cap read from
headers, disk full says disk full, a symbolic link loop says so, a text file given as a PCA model says what it
is, and every message names the file."""

from __future__ import annotations

import errno
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from thead.errors import InputError, OutputError, describe_os_error, path_problem
from thead.io import probe_video, read_image, write_image
from thead.io.image import MAX_IMAGE_PIXELS


def _png(path: Path, width: int, height: int, rows: bool = True) -> Path:
    """A grey PNG of zeros; ``rows=False`` writes the header with an empty image stream (header-only tests)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(1)
    row = b"\x00" * (width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush() if rows else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------------ pixel cap
def test_an_image_over_the_pixel_cap_is_refused_before_decoding(tmp_path, monkeypatch) -> None:
    import cv2

    big = _png(tmp_path / "big.png", 9000, 9000)  # 81 Mpx of zeros: a 0.3 MB file that decodes to 243 MB
    assert big.stat().st_size < 1_000_000 and 9000 * 9000 > MAX_IMAGE_PIXELS
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded an image over the cap"))
    with pytest.raises(InputError) as info:
        read_image(big)
    assert str(info.value).startswith(f"{big}: 9000x9000 pixels") and "megapixel limit" in str(info.value)
    # Pillow's own bomb limit (above thead's) trips on this header first: the same one-line message.
    huge = _png(tmp_path / "huge.png", 16000, 16000, rows=False)
    with pytest.raises(InputError, match=r"huge\.png: 256\.0 megapixels is over the 67\.1 megapixel limit"):
        read_image(huge)


def test_an_image_at_the_cap_still_reads(tmp_path) -> None:
    ok = _png(tmp_path / "ok.png", 640, 480)
    assert read_image(ok).shape == (480, 640, 3)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_video_with_frames_over_the_cap_is_refused_from_the_probe(tmp_path) -> None:
    big = tmp_path / "big.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=8200x8200:r=1",
                    "-frames:v", "1", "-c:v", "png", "-pix_fmt", "gray", str(big)], check=True)
    with pytest.raises(InputError, match=r"big\.mkv: 8200x8200 pixels .* over the 67\.1 megapixel limit"):
        probe_video(big)


# ------------------------------------------------------------------------------------------------ messages
def test_os_errors_are_worded_in_one_place() -> None:
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device"), "out/a.mp4") == \
        "out/a.mp4: no space left on device (disk full)"
    assert describe_os_error(OSError(errno.ELOOP, "x", "a/b.png")) == "a/b.png: symbolic link loop"
    assert describe_os_error(OSError(errno.EROFS, "x", "/ro/f")) == "/ro/f: read-only file system"
    assert describe_os_error(OSError(errno.EACCES, "x")) == "permission denied"
    assert describe_os_error(OSError(errno.EPIPE, "Broken pipe", "p")) == "p: Broken pipe"  # system wording


def test_disk_full_says_disk_full_and_names_the_file(tmp_path) -> None:
    """A real ENOSPC from the kernel: the temp file write_image uses is a link to /dev/full."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    out = tmp_path / "out.png"
    import os

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.symlink_to("/dev/full")
    with pytest.raises(OutputError) as info:
        write_image(out, np.zeros((8, 8, 3), np.uint8))
    assert str(info.value) == f"{out}: no space left on device (disk full)"
    assert not tmp.exists() and not tmp.is_symlink() and not out.exists()  # no temp file left behind


def test_a_symlink_loop_says_so(tmp_path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    assert path_problem(a) == "symbolic link loop"
    with pytest.raises(InputError, match=r"a\.png: symbolic link loop"):
        read_image(a)
    with pytest.raises(InputError, match=r"a\.png: symbolic link loop"):
        probe_video(a)
    b.unlink()
    with pytest.raises(InputError, match=r"a\.png: broken symbolic link \(points to .*b\.png"):
        read_image(a)
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)


@pytest.mark.parametrize("content,kind", [(b"mean,id_basis\n1,2\n", "a text file"),
                                          (b"\x89PNG\r\n\x1a\nxxxx", "a PNG image"),
                                          (b"", "an empty file"),
                                          (b"\x93NUMPY\x01\x00", "a single .npy array")])
def test_a_non_npz_given_as_a_pca_model_says_what_it_is(tmp_path, content: bytes, kind: str) -> None:
    from thead.facemodel.pca import load_pca_model

    f = tmp_path / "model.npz"
    f.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_pca_model(f)
    msg = str(info.value)
    assert msg.startswith(f"{f}: not a PCA model .npz ({kind}") and "pickled" not in msg


def test_a_text_file_given_as_model_to_fit_3dmm_is_named(tmp_path, astronaut) -> None:
    from typer.testing import CliRunner

    from thead.cli import app

    img, model = tmp_path / "a.png", tmp_path / "model.txt"
    write_image(img, astronaut)
    model.write_text("not a model\n")
    res = CliRunner().invoke(app, ["fit-3dmm", str(img), "-o", str(tmp_path / "w"), "--model", str(model)])
    assert res.exit_code == 1 and f"{model}: not a PCA model .npz (a text file)" in " ".join(res.output.split())
    assert "pickled" not in res.output
