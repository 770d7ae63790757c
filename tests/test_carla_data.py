"""Loading the on-disk format, and refusing every kind of bad input by name."""

import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import carla_data
from carla_data import DataError, check_mask_values, find_data_dir, list_pairs, make_dataset, split_pairs

REAL = Path(__file__).resolve().parents[2] / "shared" / "carla"


@pytest.fixture
def data(small_data, tmp_path) -> Path:
    """A private copy of the small set that a test may break."""
    return Path(shutil.copytree(small_data, tmp_path / "data"))


def first(data: Path, folder: str) -> Path:
    return sorted((data / folder).iterdir())[0]


def test_pairs_match_by_name_even_when_a_listing_would_shift(data):
    pairs = list_pairs(data)
    assert len(pairs) == 24
    assert all(p.image.name == p.mask.name for p in pairs)


def test_dataset_yields_scaled_images_and_single_channel_masks(data):
    image, mask = next(iter(make_dataset(list_pairs(data)[:2])))
    assert image.shape == (96, 128, 3) and image.dtype.name == "float32"
    assert 0.0 <= float(image.numpy().min()) and float(image.numpy().max()) <= 1.0
    assert mask.shape == (96, 128, 1) and mask.dtype.name == "uint8"
    assert int(mask.numpy().max()) < carla_data.N_CLASSES


def test_mask_resize_is_nearest_so_ids_stay_ids(data):
    pair = list_pairs(data)[0]
    full = iio.imread(pair.mask)[..., 0]
    _, mask = next(iter(make_dataset([pair])))
    assert set(np.unique(mask.numpy())) <= set(np.unique(full))
    # Nearest neighbour with pixel centres: small pixel (r, c) is full pixel (5r+2, 5c+2).
    assert np.array_equal(mask.numpy()[..., 0], full[2::5, 2::5])


def test_split_is_deterministic_and_disjoint(data):
    train, val = split_pairs(list_pairs(data))
    assert len(val) == 2 and len(train) == 22
    assert not {p.image for p in train} & {p.image for p in val}
    assert split_pairs(list_pairs(data)) == (train, val)


def test_image_without_mask_is_named(data):
    lonely = first(data, "CameraMask")
    lonely.unlink()
    with pytest.raises(DataError, match=rf"{lonely.name}: image has no mask"):
        list_pairs(data)


def test_mask_without_image_is_named(data):
    lonely = first(data, "CameraRGB")
    lonely.unlink()
    with pytest.raises(DataError, match=rf"{lonely.name}: mask has no image"):
        list_pairs(data)


def test_size_mismatch_is_named(data):
    mask = first(data, "CameraMask")
    iio.imwrite(mask, np.zeros((240, 320, 4), np.uint8), extension=".png")
    with pytest.raises(DataError, match=rf"{mask.name}: mask is 240x320 but its image is 480x640"):
        list_pairs(data)


def test_truncated_png_is_named(data):
    image = first(data, "CameraRGB")
    image.write_bytes(image.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{image.name}: truncated PNG"):
        list_pairs(data)


def test_corrupt_header_is_named(data):
    image = first(data, "CameraRGB")
    raw = bytearray(image.read_bytes())
    raw[18] ^= 0xFF  # inside the IHDR width field
    image.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{image.name}: corrupt PNG header"):
        list_pairs(data)


def test_file_that_is_not_a_png_is_named(data):
    jpeg = data / "CameraRGB" / "000000.png"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0 this is a JPEG pretending")
    with pytest.raises(DataError, match=r"000000.png: not a PNG file"):
        list_pairs(data)


def test_other_file_types_are_refused(data):
    (data / "CameraMask" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt: not a .png file"):
        list_pairs(data)


def test_hidden_files_are_ignored(data):
    (data / "CameraRGB" / ".DS_Store").write_bytes(b"\0")
    assert len(list_pairs(data)) == 24


def test_greyscale_mask_is_refused_with_the_channel_rule(data):
    mask = first(data, "CameraMask")
    iio.imwrite(mask, np.zeros((480, 640), np.uint8), extension=".png")
    with pytest.raises(DataError, match=rf"{mask.name}: expected an 8-bit RGB or RGBA PNG, got bit depth 8"):
        list_pairs(data)


def test_class_id_out_of_range_is_named_by_the_checker(data):
    mask = first(data, "CameraMask")
    pixels = iio.imread(mask)
    pixels[0, 0, 0] = 23
    iio.imwrite(mask, pixels, extension=".png")
    with pytest.raises(DataError, match=rf"{mask.name}: class id 23 in the red channel; expected ids 0..22"):
        check_mask_values(list_pairs(data))


def test_class_id_out_of_range_stops_the_pipeline_naming_the_file(data):
    import tensorflow as tf

    mask = first(data, "CameraMask")
    pixels = iio.imread(mask)
    pixels[10, 10, 0] = 200
    iio.imwrite(mask, pixels, extension=".png")
    with pytest.raises(tf.errors.InvalidArgumentError, match=mask.name):
        list(make_dataset(list_pairs(data)[:1]))


def test_empty_folder_is_named(data):
    for f in (data / "CameraRGB").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"CameraRGB: folder is empty"):
        list_pairs(data)


def test_missing_folder_is_named(data):
    shutil.rmtree(data / "CameraMask")
    with pytest.raises(DataError, match=r"CameraMask: folder is missing"):
        list_pairs(data)


def test_data_dir_found_above_the_notebook(data, tmp_path, monkeypatch):
    monkeypatch.delenv(carla_data.DATA_DIR_ENV, raising=False)
    deep = tmp_path / "release" / "unet_segmentation"
    deep.mkdir(parents=True)
    assert find_data_dir(deep) == data


def test_data_dir_from_environment(data, tmp_path, monkeypatch):
    monkeypatch.setenv(carla_data.DATA_DIR_ENV, str(data))
    assert find_data_dir(tmp_path) == data
    monkeypatch.setenv(carla_data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="CARLA_DATA_DIR is .*nowhere.*no CameraRGB/ folder"):
        find_data_dir()


def test_no_data_anywhere_says_how_to_get_some(tmp_path, monkeypatch):
    monkeypatch.delenv(carla_data.DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="carla_synth.py"):
        find_data_dir(tmp_path)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no real CARLA set at {REAL}")
def test_real_set_loads_in_the_same_format():
    pairs = list_pairs(REAL)
    assert len(pairs) > 0
    check_mask_values(pairs[:50])
    image, mask = next(iter(make_dataset(pairs[:1])))
    assert image.shape == (96, 128, 3) and mask.shape == (96, 128, 1)

