"""tflearn_compat.load_data against tflearn 0.5.0's own loader code (tests/tflearn_oracle.py), on a small
official-layout archive made here and, in a slow test, on the real one: the same X to 1/255, the
same Y, one-hot both ways, and tflearn's pickles read back into the same arrays."""

import io
import shutil
import tarfile

import numpy as np
import pytest
import tflearn_oracle as oracle
from conftest import REAL_ARCHIVE

from alexnet_split import data, tflearn_compat

pytestmark = pytest.mark.skipif(oracle.SPEC is None, reason="tflearn 0.5.0 is not installed (pip install -e .[test])")
SIZE = 24  # resize_pics of the small archive


def small_archive(path):
    """The official layout (jpg/image_NNNN.jpg, jpg/files.txt) of 1360 tiny JPEGs of random sizes and
    content: a squash and a crop, or two filters, give visibly different pixels."""
    from PIL import Image

    rng = np.random.default_rng(17)
    with tarfile.open(path, "w:gz") as tar:
        for n in range(1, data.NUM_IMAGES + 1):
            w, h = rng.integers(20, 48, size=2)
            coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
            im = Image.fromarray(coarse).resize((int(w), int(h)), Image.BICUBIC)  # smooth blobs, not noise
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=92)
            _add(tar, f"jpg/image_{n:04d}.jpg", buf.getvalue())
        _add(tar, "jpg/files.txt", "".join(f"image_{n:04d}.jpg\n" for n in range(1, 1361)).encode())
    return path


def _add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def run_tflearn(dirname, pickles, **kw):
    """tflearn's load_data(dirname, **kw) on a prepared folder; the pickle it writes is moved to `pickles`
    (a stale one would be returned by the next call, whatever its arguments)."""
    _, oxflower17 = oracle.load()
    x, y = oxflower17.load_data(dirname=str(dirname), **kw)
    key = "_".join(f"{k}={v}" for k, v in sorted(kw.items()))
    shutil.move(dirname / data.PICKLE, pickles / f"{key}.pkl")
    return np.array(x), np.array(y), pickles / f"{key}.pkl"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small archive, and tflearn's (X, Y, pickle) for shuffle and one_hot both ways."""
    tmp = tmp_path_factory.mktemp("tflearn_small")
    (tmp / "ours").mkdir()
    archive = small_archive(tmp / "ours" / data.ARCHIVE)
    oracle.prepare(archive, tmp / "tflearn")
    (tmp / "pickles").mkdir()
    runs = {(shuffle, one_hot): run_tflearn(tmp / "tflearn", tmp / "pickles", resize_pics=(SIZE, SIZE),
                                            shuffle=shuffle, one_hot=one_hot)
            for shuffle in (False, True) for one_hot in (False, True)}
    return tmp, oracle.image_numbers(tmp / "tflearn"), runs


def compare_unshuffled(ours, theirs, numbers):
    """(max |X - tflearn X| matching tflearn's rows to ours by image number, whether Y is equal)."""
    x, y = ours
    tx, ty = theirs
    # ours unshuffled: by tflearn's label, then image number
    order = sorted(range(1, data.NUM_IMAGES + 1), key=lambda n: (tflearn_compat.tflearn_labels(data.label_of(n)), n))
    row = {n: i for i, n in enumerate(order)}
    worst = max(float(np.abs(x[row[n]] - tx[i]).max()) for i, n in enumerate(numbers))
    return worst, y.dtype == ty.dtype and np.array_equal(y, ty)


@pytest.mark.parametrize("one_hot", [False, True])
def test_load_data_is_tflearns_on_a_small_archive(small, one_hot):
    tmp, numbers, runs = small
    tx, ty, _ = runs[(False, one_hot)]
    ours = tflearn_compat.load_data(tmp / "ours", resize_pics=(SIZE, SIZE), shuffle=False, one_hot=one_hot)
    assert ours[0].dtype == tx.dtype == np.float32 and ours[0].shape == tx.shape
    worst, y_equal = compare_unshuffled(ours, (tx, ty), numbers)
    print(f"small archive, one_hot={one_hot}: max |X - tflearn X| = {worst:.3g}, Y equal: {y_equal}")
    assert worst <= 1 / 255 and y_equal
    # shuffled, both hold the same (image, label) pairs
    sx, sy, _ = runs[(True, one_hot)]
    x, y = tflearn_compat.load_data(tmp / "ours", resize_pics=(SIZE, SIZE), shuffle=True, one_hot=one_hot)
    assert sorted(zip(_keys(x), y.tolist(), strict=False)) == sorted(zip(_keys(sx), sy.tolist(), strict=False))


def _keys(x):
    return [bytes(np.rint(im * 255).astype(np.uint8)) for im in x]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("one_hot", [False, True])
def test_tflearns_pickle_reads_back_into_the_same_arrays(small, tmp_path, shuffle, one_hot):
    """The 17flowers.pkl tflearn's build_image_dataset_from_dir wrote (X a list of float arrays when
    unshuffled, Y ints or one-hot), alone in a folder: our loader returns its X and Y, in its order."""
    tx, ty, pkl = small[2][(shuffle, one_hot)]
    shutil.copyfile(pkl, tmp_path / data.PICKLE)
    x, y = tflearn_compat.load_data(tmp_path, resize_pics=(SIZE, SIZE), shuffle=False, one_hot=one_hot)
    assert np.array_equal(x, tx) and x.dtype == tx.dtype
    assert np.array_equal(y, ty) and y.dtype == ty.dtype
    assert sorted(p.name for p in tmp_path.iterdir()) == [data.PICKLE]  # nothing written beside it


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"real archive not at {REAL_ARCHIVE}")
def test_load_data_is_tflearns_on_the_real_archive(tmp_path):
    """Default arguments (224x224, one_hot False), unshuffled so that images match file by file."""
    oracle.prepare(REAL_ARCHIVE, tmp_path / "tflearn")
    (tmp_path / "pickles").mkdir()
    tx, ty, _ = run_tflearn(tmp_path / "tflearn", tmp_path / "pickles", shuffle=False)
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / data.ARCHIVE).symlink_to(REAL_ARCHIVE)
    ours = tflearn_compat.load_data(tmp_path / "ours", shuffle=False)
    worst, y_equal = compare_unshuffled(ours, (tx, ty), oracle.image_numbers(tmp_path / "tflearn"))
    print(f"real archive, default arguments: max |X - tflearn X| = {worst:.3g}, Y equal: {y_equal}")
    assert worst <= 1 / 255 and y_equal
