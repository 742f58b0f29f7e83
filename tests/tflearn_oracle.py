"""tflearn 0.5.0's own Flowers 17 loader, run as a test oracle without ``import tflearn``.

``tflearn/__init__.py`` fails under TensorFlow 2.x, so its ``data_utils.py`` and
``datasets/oxflower17.py`` are executed from the installed files as modules of a stub package
(their relative import resolves inside it), with Pillow's removed ``Image.ANTIALIAS`` aliased to
``Image.LANCZOS`` while they are defined (it is the default of tflearn's ``resize_image``).
"""

import functools
import importlib.util
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np

SPEC = importlib.util.find_spec("tflearn")  # locates the installed package without running its __init__
PACKAGE = "_tflearn_oracle"  # the stub's name: a real `import tflearn` elsewhere is not shadowed


@functools.cache
def load():
    """(data_utils, oxflower17): tflearn's modules, executed once from its installed source files."""
    from PIL import Image

    root = Path(SPEC.submodule_search_locations[0])
    for name, folder in ((PACKAGE, root), (f"{PACKAGE}.datasets", root / "datasets")):
        stub = types.ModuleType(name)
        stub.__path__ = [str(folder)]
        sys.modules[name] = stub
    alias = not hasattr(Image, "ANTIALIAS")
    if alias:
        Image.ANTIALIAS = Image.LANCZOS
    try:
        return (_execute(f"{PACKAGE}.data_utils", root / "data_utils.py"),
                _execute(f"{PACKAGE}.datasets.oxflower17", root / "datasets" / "oxflower17.py"))
    finally:
        if alias:
            del Image.ANTIALIAS


def _execute(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def prepare(archive: Path, dirname: Path):
    """`dirname` as tflearn's ``maybe_download`` leaves it after downloading `archive`: the archive,
    extracted by tflearn's ``untar``, its images moved into jpg/0..16 by ``build_class_directories``.
    (With the archive present, tflearn's ``load_data`` downloads nothing.)"""
    _, oxflower17 = load()
    dirname.mkdir(parents=True)
    shutil.copyfile(archive, dirname / "17flowers.tgz")
    oxflower17.untar(str(dirname / "17flowers.tgz"), str(dirname))
    oxflower17.build_class_directories(str(dirname / "jpg"))


def image_numbers(dirname: Path) -> np.ndarray:
    """The image number of each row of tflearn's unshuffled X: the files in the order its
    ``directory_to_samples`` lists them (folders sorted by name, files in directory order)."""
    data_utils, _ = load()
    paths, _ = data_utils.directory_to_samples(str(dirname / "jpg") + "/", flags=[".jpg", ".jpeg"])
    return np.array([int(re.search(r"image_(\d{4})", p).group(1)) for p in paths])
