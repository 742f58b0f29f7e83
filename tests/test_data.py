"""Flowers 17 loading: every source, every bad input, splits, the cache and the tflearn API.

Synthetic data is made inside the tests: 1360 tiny JPEGs whose colour encodes their class, so
that labels can be checked from the pixels.
"""

import http.server
import io
import os
import pickle
import shutil
import tarfile
import threading

import numpy as np
import pytest
from conftest import REAL_ARCHIVE, class_from_pixels, colour, jpeg_bytes

from alexnet_split import data, data_cache, data_sources, tflearn_compat
from alexnet_split.data import DatasetError

SIZE = 16


def make_root(tmp_path, jpg_dir, kind="folder", mutate=None):
    root = tmp_path / "data"
    src = root / "jpg"
    shutil.copytree(jpg_dir, src)
    if mutate:
        mutate(src)
    if kind == "archive":
        with tarfile.open(root / data.ARCHIVE, "w:gz") as tar:
            tar.add(src, arcname="jpg")
        shutil.rmtree(src)
    return root


@pytest.fixture(scope="session")
def archive_bytes(jpg_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("tgz") / data.ARCHIVE
    with tarfile.open(path, "w:gz") as tar:
        tar.add(jpg_dir, arcname="jpg")
    return path.read_bytes()


def test_labels_are_blocks_of_80():
    assert [data.label_of(n) for n in (1, 80, 81, 721, 1360)] == [0, 0, 1, 9, 16]
    assert data.CLASS_NAMES[data.label_of(721)] == "Sunflower"
    with pytest.raises(ValueError, match="1361"):
        data.label_of(1361)


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_folder_and_archive_give_the_same_labelled_images(tmp_path, jpg_dir, kind):
    ds = data.load(make_root(tmp_path, jpg_dir, kind), size=SIZE)
    assert ds.images.shape == (1360, SIZE, SIZE, 3) and ds.images.dtype == np.uint8
    assert np.array_equal(ds.numbers, np.arange(1, 1361))
    assert np.bincount(ds.labels).tolist() == [80] * 17
    assert np.array_equal(class_from_pixels(ds.images), ds.labels)


def test_tflearn_folder_layout_jpg_k(tmp_path, jpg_dir):
    def into_class_folders(src):
        for n in range(1, 1361):
            d = src / str(data.label_of(n))
            d.mkdir(exist_ok=True)
            (src / f"image_{n:04d}.jpg").rename(d / f"image_{n:04d}.jpg")

    ds = data.load(make_root(tmp_path, jpg_dir, mutate=into_class_folders), size=SIZE)
    assert np.array_equal(class_from_pixels(ds.images), ds.labels)


def test_source_preference_folder_then_archive_then_pickle(tmp_path, jpg_dir):
    root = make_root(tmp_path, jpg_dir, "archive")
    (root / data.PICKLE).write_bytes(b"never read while the archive exists")
    assert data_sources.find_source(root)[0] == "archive"
    shutil.copytree(jpg_dir, root / "jpg")
    assert data_sources.find_source(root)[0] == "folder"
    (root / data.ARCHIVE).unlink()
    shutil.rmtree(root / "jpg")
    assert data_sources.find_source(root)[0] == "pickle"
    (root / data.PICKLE).unlink()
    assert data_sources.find_source(root) == ("download", root / data.ARCHIVE)


def test_data_may_name_the_archive_or_the_pickle_itself(tmp_path, jpg_dir):
    """``--data path/17flowers.tgz`` (any file name) reads that file; so does the tflearn pickle."""
    root = make_root(tmp_path, jpg_dir, "archive")
    renamed = tmp_path / "my_flowers.tar.gz"
    (root / data.ARCHIVE).rename(renamed)
    ds = data.load(renamed, size=SIZE)
    assert data_sources.find_source(renamed) == ("archive", renamed) and ds.source == str(renamed)
    assert np.array_equal(class_from_pixels(ds.images), ds.labels)
    tflearn_pickle(tmp_path / "flowers.pkl")
    assert data_sources.find_source(tmp_path / "flowers.pkl") == ("pickle", tmp_path / "flowers.pkl")
    assert np.bincount(data.load(tmp_path / "flowers.pkl", size=SIZE).labels).tolist() == [80] * 17


@pytest.mark.parametrize("name", ["notes.txt", "missing.tgz"])
def test_data_naming_another_file_says_what_is_accepted(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("not flowers")
    with pytest.raises(DatasetError, match=f"{name}.*Accepted: a data folder") as err:
        data.load(path, size=SIZE)
    assert "17flowers.tgz" in str(err.value) and "17flowers.pkl" in str(err.value)


def tflearn_pickle(path, one_hot=False, n=1360):
    """What tflearn 0.5.0 writes: shuffled float images in [0, 1], lexicographic labels."""
    rng = np.random.default_rng(0)
    true = np.array([data.label_of(i) for i in range(1, n + 1)])
    folder_names = sorted(str(c) for c in range(17))  # '0', '1', '10', ..., '9'
    lex = np.array([folder_names.index(str(c)) for c in true])
    x = np.stack([np.full((SIZE, SIZE, 3), colour(c), np.float32) / 255.0 for c in true])
    order = rng.permutation(n)
    y = np.eye(17, dtype=np.float32)[lex[order]] if one_hot else lex[order]
    with open(path, "wb") as f:
        pickle.dump((x[order], y), f)
    return true[order]


@pytest.mark.parametrize("one_hot", [False, True])
def test_tflearn_pickle_labels_are_remapped_to_true_classes(tmp_path, one_hot):
    true = tflearn_pickle(tmp_path / data.PICKLE, one_hot)
    ds = data.load(tmp_path, size=SIZE)
    assert ds.source.endswith(data.PICKLE)
    assert np.array_equal(ds.labels, true)
    assert np.array_equal(class_from_pixels(ds.images), true)
    assert tflearn_compat.TFLEARN_LABEL_TO_CLASS.tolist()[:4] == [0, 1, 10, 11]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / data.PICKLE).write_bytes(pickle.dumps((_Evil(), [0])))
    with pytest.raises(DatasetError, match=r"17flowers\.pkl: unreadable tflearn pickle .*only numpy arrays"):
        data.load(tmp_path, size=SIZE)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content,message", [
    (b"not a pickle at all", "unreadable tflearn pickle"),
    (pickle.dumps((np.zeros((5, 4, 4, 3)), np.zeros(5))), "holds 5 images"),
    (pickle.dumps(np.zeros(3)), "unreadable tflearn pickle"),
])
def test_bad_pickles_name_the_file(tmp_path, content, message):
    (tmp_path / data.PICKLE).write_bytes(content)
    with pytest.raises(DatasetError, match=f"{data.PICKLE}.*{message}"):
        data.load(tmp_path, size=SIZE)


@pytest.mark.parametrize("kind", ["folder", "archive"])
@pytest.mark.parametrize("damage,message", [
    ("garbage", r"image_0042\.jpg: cannot decode image"),
    ("truncated", r"image_0042\.jpg: cannot decode image"),
    ("missing", r"found 1359 images; missing image_0042\.jpg"),
])
def test_bad_images_name_the_file(tmp_path, jpg_dir, kind, damage, message):
    def mutate(src):
        f = src / "image_0042.jpg"
        if damage == "garbage":
            f.write_bytes(b"\x00" * 500)
        elif damage == "truncated":
            f.write_bytes(f.read_bytes()[:200])
        else:
            f.unlink()

    with pytest.raises(DatasetError, match=message):
        data.load(make_root(tmp_path, jpg_dir, kind, mutate), size=SIZE)


def test_wrong_count_names_the_extra_and_the_folder(tmp_path, jpg_dir):
    root = make_root(tmp_path, jpg_dir, mutate=lambda src: (src / "image_1361.jpg").write_bytes(jpeg_bytes(0)))
    with pytest.raises(DatasetError, match=r"jpg: expected image_0001\.jpg \.\. image_1360\.jpg, found 1361"):
        data.load(root, size=SIZE)


def test_wrong_and_truncated_archives(tmp_path, archive_bytes):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with tarfile.open(wrong / data.ARCHIVE, "w:gz") as tar:
        info = tarfile.TarInfo("README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DatasetError, match=r"wrong/17flowers\.tgz: no jpg/image_NNNN\.jpg files"):
        data.load(wrong, size=SIZE)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / data.ARCHIVE).write_bytes(archive_bytes[: len(archive_bytes) // 2])
    with pytest.raises(DatasetError, match=r"cut/17flowers\.tgz: "):
        data.load(cut, size=SIZE)
    text = tmp_path / "text"
    text.mkdir()
    (text / data.ARCHIVE).write_text("<html>404</html>")
    with pytest.raises(DatasetError, match=r"text/17flowers\.tgz: not a readable tar archive"):
        data.load(text, size=SIZE)


class _Server:
    """A loopback HTTP server serving `payload`, optionally dropping the connection midway."""

    def __init__(self, payload, drop=False):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 3] if drop else payload)

            def log_message(self, *args):
                pass

        self.requests = 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/17flowers.tgz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_when_asked_then_load(tmp_path, archive_bytes):
    server = _Server(archive_bytes)
    try:
        ds = data.load(tmp_path / "new" / "flowers", size=SIZE, url=server.url, download=True)
    finally:
        server.close()
    assert len(ds) == 1360 and np.array_equal(class_from_pixels(ds.images), ds.labels)
    assert (tmp_path / "new" / "flowers" / data.ARCHIVE).read_bytes() == archive_bytes
    assert not [f for f in (tmp_path / "new").rglob("*") if ".tmp" in f.name]


def test_default_folder_is_downloaded_into_unasked(tmp_path, archive_bytes, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FLOWERS17_DIR", raising=False)
    server = _Server(archive_bytes)
    try:
        assert len(data.load(size=SIZE, url=server.url)) == 1360
    finally:
        server.close()
    assert (tmp_path / ".cache/alexnet_split/17flowers" / data.ARCHIVE).read_bytes() == archive_bytes


def test_failed_download_leaves_nothing_and_retries(tmp_path, archive_bytes, monkeypatch):
    monkeypatch.setenv("ALEXNET_SPLIT_RETRY_DELAY", "0")
    server = _Server(archive_bytes, drop=True)
    try:
        with pytest.raises(DatasetError, match=r"download of http://127\.0\.0\.1:\d+/17flowers\.tgz .* failed after 3"):
            data.load(tmp_path / "d" / "e", size=SIZE, url=server.url, download=True)
    finally:
        server.close()
    assert server.requests == 3
    assert list(tmp_path.iterdir()) == []  # the folders it made for the download are gone too


def test_missing_data_path_is_an_error_that_creates_nothing(tmp_path, capsys):
    """A typo in --data names the path; it is not a download target."""
    from alexnet_split import cli

    missing = tmp_path / "nonexistent" / "flowers"
    with pytest.raises(DatasetError, match=r"nonexistent/flowers: no such file or folder"):
        data.load(missing, size=SIZE)
    assert cli.main(["train", "--data", str(missing), "--out", str(tmp_path / "run"), "--recipe", "quick"]) == 2
    assert f"{missing}: no such file or folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_download_flag_downloads_into_data(tmp_path, archive_bytes, monkeypatch, capsys):
    from alexnet_split import cli

    def fake_download(url, dest):
        assert url == data.URL + data.ARCHIVE
        dest.write_bytes(archive_bytes)

    monkeypatch.setattr(data_sources, "download_file", fake_download)
    args = ["export-data", "--data", str(tmp_path / "new"), "--size", "16", "--out", str(tmp_path / "out")]
    assert cli.main(args) == 2 and "new: no such file or folder" in capsys.readouterr().err
    assert cli.main([*args, "--download"]) == 0
    assert (tmp_path / "new" / data.ARCHIVE).read_bytes() == archive_bytes
    assert len(list((tmp_path / "out" / "jpg").glob("*.jpg"))) == 1360


def test_a_folder_without_flowers_is_downloaded_into_only_when_asked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: holds no Flowers 17 data .*--download"):
        data.load(tmp_path / "empty", size=SIZE)
    assert list((tmp_path / "empty").iterdir()) == []


def listing(folder):
    """Every path under `folder` with its mode, size, mtime and (files) bytes."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns,
                                               p.read_bytes() if p.is_file() else None)
            for p in sorted([folder, *folder.rglob("*")])}


@pytest.mark.parametrize("kind", ["folder", "archive", "pickle"])
@pytest.mark.parametrize("read_only", [False, True])
def test_the_data_folder_is_only_read_and_the_cache_is_in_the_cache_folder(tmp_path, jpg_dir, monkeypatch, kind,
                                                                           read_only):
    """Byte-identical before and after a load (even as root, for whom every folder is writable); the
    decoded cache lands in $ALEXNET_SPLIT_CACHE, else ~/.cache/alexnet_split."""
    if kind == "pickle":
        root = tmp_path / "data"
        root.mkdir()
        tflearn_pickle(root / data.PICKLE)
    else:
        root = make_root(tmp_path, jpg_dir, kind)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ALEXNET_SPLIT_CACHE")  # the default: ~/.cache/alexnet_split/decoded
    if read_only:  # with the override
        monkeypatch.setenv("ALEXNET_SPLIT_CACHE", str(tmp_path / "my_cache"))
        for p in [*root.rglob("*"), root]:
            p.chmod(0o555 if p.is_dir() else 0o444)
    before = listing(root)
    x, y = tflearn_compat.load_data(root, resize_pics=(SIZE, SIZE))
    assert listing(root) == before
    data.load(root, size=SIZE)
    assert listing(root) == before
    cache = tmp_path / ("my_cache" if read_only else "home/.cache/alexnet_split/decoded")
    assert data_cache.cache_dir() == cache and len(list(cache.glob("flowers17_*.npz"))) == 2


def test_cache_is_used_keyed_and_atomic(tmp_path, jpg_dir, monkeypatch):
    monkeypatch.setenv("ALEXNET_SPLIT_CACHE", str(tmp_path / "cache"))
    root = make_root(tmp_path, jpg_dir, "archive")
    first = data.load(root, size=SIZE)
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1 and caches[0].suffix == ".npz" and "_crop_" in caches[0].name

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    read_archive = data_sources.read_archive
    monkeypatch.setattr(data_sources, "read_archive", boom)
    second = data.load(root, size=SIZE)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    with pytest.raises(AssertionError, match="decoded again"):
        data.load(root, size=SIZE + 8)  # another size is another cache entry
    with pytest.raises(AssertionError, match="decoded again"):
        data.load(root, size=SIZE, resize="squash")  # and so is another resize
    caches[0].write_bytes(b"damaged")
    monkeypatch.setattr(data_sources, "read_archive", read_archive)
    assert np.array_equal(data.load(root, size=SIZE).images, first.images)  # rebuilt, not trusted
    assert not [f for f in (tmp_path / "cache").iterdir() if ".tmp" in f.name]
    assert sorted(p.name for p in root.iterdir()) == [data.ARCHIVE]


def test_crop_is_the_papers_centre_square_and_squash_is_tflearns_whole_image():
    """A 60x20 image of three colour bands: the crop keeps the middle band, the squash all three."""
    from PIL import Image

    bands = np.zeros((20, 60, 3), np.uint8)
    bands[:, :20, 0], bands[:, 20:40, 1], bands[:, 40:, 2] = 255, 255, 255
    buf = io.BytesIO()
    Image.fromarray(bands).save(buf, "PNG")
    crop = data_sources.decode_resize(buf.getvalue(), 18, "bands", "crop")
    squash = data_sources.decode_resize(buf.getvalue(), 18, "bands", "squash")
    assert crop.shape == squash.shape == (18, 18, 3)
    assert crop[:, 1:-1, 1].min() == 255 and crop[:, 1:-1, [0, 2]].max() == 0  # bilinear blurs the edge columns
    assert crop[:, :, [0, 2]].max() < 20
    assert squash.argmax(axis=2)[9].tolist() == [0] * 6 + [1] * 6 + [2] * 6  # red, green, blue: all three bands
    expected = Image.fromarray(bands).resize((18, 18), Image.LANCZOS)
    assert np.array_equal(squash, np.asarray(expected))
    with pytest.raises(ValueError, match=r"resize must be one of \['crop', 'squash'\], got 'stretch'"):
        data.load(None, size=SIZE, resize="stretch")


def test_stratified_split_is_deterministic_disjoint_and_balanced():
    labels = np.repeat(np.arange(17), 80)
    a, b = data.stratified_split(labels, seed=0), data.stratified_split(labels, seed=0)
    c = data.stratified_split(labels, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train"], c["train"])
    assert {k: len(v) for k, v in a.items()} == {"train": 680, "val": 340, "test": 340}
    assert len(set(a["train"]) | set(a["val"]) | set(a["test"])) == 1360
    for k, n in (("train", 40), ("val", 20), ("test", 20)):
        assert np.bincount(labels[a[k]]).tolist() == [n] * 17


def test_official_split_from_a_generated_mat(tmp_path, jpg_dir):
    from scipy.io import savemat

    ds = data.load(make_root(tmp_path, jpg_dir, "folder"), size=SIZE)
    split = data.stratified_split(ds.labels, seed=5)
    mat = {f"{k}{i}": (split[p] + 1)[None, :].astype(float) for i in (1, 2, 3)
           for k, p in (("trn", "train"), ("val", "val"), ("tst", "test"))}
    savemat(tmp_path / data.SPLITS_MAT, mat)
    got = data.official_split(ds, tmp_path / data.SPLITS_MAT, which=2)
    assert all(np.array_equal(got[k], split[k]) for k in split)
    savemat(tmp_path / "bad.mat", {"trn1": mat["trn1"]})
    with pytest.raises(DatasetError, match=r"bad\.mat: no variable 'val1'"):
        data.official_split(ds, tmp_path / "bad.mat", which=1)


def test_tflearn_compatible_load_data(tmp_path, jpg_dir):
    """tflearn's labels by default (its folder order), the true classes one argument away, seeded shuffles."""
    root = make_root(tmp_path, jpg_dir, "archive")
    x, y = tflearn_compat.load_data(dirname=str(root), resize_pics=(SIZE, SIZE), shuffle=True, one_hot=True)
    assert x.shape == (1360, SIZE, SIZE, 3) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (1360, 17) and y.dtype == np.float64  # tflearn's to_categorical
    true = class_from_pixels((x * 255).round())
    assert np.array_equal(tflearn_compat.tflearn_labels(true), y.argmax(1)) and not np.array_equal(true, y.argmax(1))
    x1, y1 = tflearn_compat.load_data(dirname=str(root), resize_pics=(SIZE, SIZE), one_hot=True)
    assert np.array_equal(x1, x) and np.array_equal(y1, y)  # the same seed, the same order
    assert not np.array_equal(tflearn_compat.load_data(root, (SIZE, SIZE), seed=1)[1], y.argmax(1))
    x2, y2 = tflearn_compat.load_data(dirname=str(root), resize_pics=(SIZE, SIZE), shuffle=False)
    assert np.array_equal(y2, np.repeat(np.arange(17), 80))  # tflearn's unshuffled Y: folder '0', '1', '10', ...
    assert np.array_equal(class_from_pixels((x2 * 255).round()), tflearn_compat.TFLEARN_LABEL_TO_CLASS[y2])
    x3, y3 = tflearn_compat.load_data(dirname=str(root), resize_pics=(SIZE, SIZE), shuffle=False, true_labels=True)
    assert np.array_equal(y3, np.repeat(np.arange(17), 80))
    assert np.array_equal(class_from_pixels((x3 * 255).round()), y3)
    labels = tflearn_compat.TFLEARN_LABELS
    assert labels[10] == 2 and labels[2] == 9  # '10' sorts third, '2' tenth


@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"real archive not at {REAL_ARCHIVE}")
def test_real_flowers17_archive(tmp_path):
    (tmp_path / data.ARCHIVE).symlink_to(REAL_ARCHIVE)
    ds = data.load(tmp_path, size=32)
    assert len(ds) == 1360
    assert np.bincount(ds.labels).tolist() == [80] * 17
    i = int(np.flatnonzero(ds.numbers == 721)[0])
    assert ds.labels[i] == 9 and data.CLASS_NAMES[ds.labels[i]] == "Sunflower"
    assert ds.images.std() > 10  # real photographs, not blank frames


def test_crop_resizes_with_bilinear_then_takes_the_central_square():
    """On noise, where resampling filters differ: "crop" is PIL's BILINEAR of the short side to
    `size`, then the centre (not BICUBIC, nor LANCZOS, which is "squash"'s)."""
    from PIL import Image

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    size = 24
    w = round(53 * size / 37)
    by_hand = noise.resize((w, size), Image.BILINEAR).crop(((w - size) // 2, 0, (w - size) // 2 + size, size))
    crop = np.asarray(data_sources.resize_image(noise, size, "crop"))
    np.testing.assert_array_equal(crop, np.asarray(by_hand))
    for other in (Image.BICUBIC, Image.LANCZOS):
        assert not np.array_equal(crop, np.asarray(noise.resize((w, size), other).crop(
            ((w - size) // 2, 0, (w - size) // 2 + size, size))))


def test_the_cache_command_lists_and_clears_only_the_decoded_images(tmp_path, monkeypatch, capsys):
    from alexnet_split import cli

    monkeypatch.setenv("ALEXNET_SPLIT_CACHE", str(tmp_path))
    (tmp_path / "flowers17_archive_224px_squash_0123456789abcdef.npz").write_bytes(b"x" * 3_000_000)
    (tmp_path / "flowers17_folder_76px_crop_fedcba9876543210.npz").write_bytes(b"x" * 1_000_000)
    (tmp_path / "notes.txt").write_text("not the cache's")
    entries = data_cache.cache_entries()
    assert [(e["kind"], e["size"], e["resize"], e["bytes"]) for e in entries] == [
        ("archive", 224, "squash", 3_000_000), ("folder", 76, "crop", 1_000_000)]
    assert cli.main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}: 2 cached file(s), 4 MB" in out and "224 px, resize squash, from the archive" in out
    assert cli.main(["cache", "--clear"]) == 0
    assert f"{tmp_path}: deleted 2 cached file(s), 4 MB freed" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and data_cache.cache_entries() == []
