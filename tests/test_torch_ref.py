"""The PyTorch reference (alexnet_split.torch_ref): the same network as the Keras one, by its
parameter count and its LRN, and its timing runs. Skipped where torch is not installed (CI);
torch is never a dependency of the project."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from alexnet_split import spec, torch_ref  # noqa: E402


@pytest.mark.parametrize("layout,mode,classes", [("paper", "towers", 17), ("paper", "towers", 1000),
                                                 ("paper", "merged", 17), ("paper", "half", 17),
                                                 ("seed", "merged", 17)])
def test_parameter_count_equals_the_spec(layout, mode, classes):
    model = torch_ref.TorchAlexNet(layout, mode, num_classes=classes)
    assert torch_ref.parameter_count(model) == spec.parameter_count(spec.get_layout(layout), mode,
                                                                    num_classes=classes)


def test_paper_towers_parameter_count_is_the_reference_figure():
    assert torch_ref.parameter_count(torch_ref.TorchAlexNet("paper", "towers", num_classes=17)) == 56_937_873


def test_torch_lrn_equals_the_papers_formula():
    """torch divides alpha by n; torch_ref scales it back: b_c = a_c / (2 + 1e-4 sum_{|j-c|<=2} a_j^2)^0.75
    (Section 3.3, and alexnet_split.layers.LRN), with the window cut at the first and last channel."""
    x = np.random.default_rng(0).uniform(0, 30, (2, 5, 5, 48)).astype("float32")
    sq = np.pad(x.astype("float64") ** 2, ((0, 0), (0, 0), (0, 0), (2, 2)))
    ours = x / (2.0 + 1e-4 * sum(sq[..., i:i + 48] for i in range(5))) ** 0.75
    theirs = torch_ref.local_response_norm()(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5)


def test_towers_forward_and_a_timed_eager_run():
    model = torch_ref.TorchAlexNet("paper", "towers", input_shape=(67, 67, 3))
    assert model(torch.rand(2, 3, 67, 67) * 255).shape == (2, 17)
    r = torch_ref.time_training(model, batch=2, steps=1, input_size=67, device="cpu", compile=False, warmup=1)
    assert r["img_s"] > 0 and r["note"].startswith("eager, channels_last, bf16 autocast")
