"""Every study parameter has a rule, checked before a kernel starts: bad values give one
line, exit 2, and nothing written."""

import pytest

from sagekit.cli import main
from sagekit.report import notebook_parameters
from sagekit.studies import STUDIES
from sagekit.studies.parameters import ParameterError
from sagekit.studies.validation import MAX_IMAGES, validate


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_every_parameter_has_a_rule_and_the_defaults_pass(study):
    defaults = STUDIES[study].schema.defaults
    assert defaults == notebook_parameters(STUDIES[study].path)
    images = validate(study, defaults, STUDIES[study].path.parent)
    assert 1 <= images <= MAX_IMAGES


# The values a hostile but fair user tried (issue 11), and more: each must be refused.
BAD = [
    ("seed-shifts", "batch_size=-1", "'batch_size' must be an integer from 0 to 4096 (0: from free GPU memory)"),
    ("seed-shifts", "dtype='fp8'", "'dtype' must be one of 'auto', 'float32', 'float16', 'bfloat16'"),
    ("seed-shifts", "compile=1", "parameter 'compile' takes bool (default False), got int 1"),
    ("seed-shifts", "n_labels=-1", "'n_labels' must be an integer from 1"),
    ("seed-shifts", "seeds_per_cell=0", "'seeds_per_cell' must be an integer from 1"),
    ("seed-shifts", "seeds_per_cell=1000000000", "'seeds_per_cell' must be an integer from 1 to 10000"),
    ("seed-shifts", "seeds_per_cell=5000", "would generate about"),
    ("seed-shifts", "steps=-5", "'steps' must be an integer from 1 to 1000, or None (the model's default)"),
    ("prompt-failures", "steps=0", "'steps' must be an integer from 1"),
    ("seed-shifts", "device='cuda:99'", "'device' is 'cuda:99'"),
    ("seed-shifts", "device='tpu'", "'device'"),
    ("seed-shifts", "shifts={'UMS': 'abc'}", "must be a list"),
    ("seed-shifts", "shifts={'UMS': ['abc']}", "must be a number"),
    ("seed-shifts", "shifts={'constant': [0.1]}", "unknown shift 'constant'"),
    ("seed-shifts", "shifts={'sorted': [16]}", "unknown shift 'sorted'"),
    ("seed-shifts", "shifts={'MS': [0.1]}", "must be a pair"),
    ("seed-shifts", "shifts={'PAS': [0.5]}", "must be an integer"),
    ("seed-shifts", "shifts={'SDS': [1.0]}", "must be a number"),
    ("seed-shifts", "models=['sagekit-test/not-downloaded']", "not in the local Hugging Face cache"),
    ("seed-shifts", "models=[]", "must be a list of 1"),
    ("seed-shifts", "judge='nope'", "unknown judge 'nope'"),
    ("seed-shifts", "clip='open_clip:ViT-B-32:laion2b_s34b_b79k'", "hf download"),
    ("seed-shifts", "label_set='imagenet100'", "does not know"),
    ("seed-shifts", "label_set='nope'", "unknown label set"),
    ("seed-shifts", "guidance=[-1.0]", "'guidance[0]' must be a number at least 0"),
    ("toy-world", "per_label=0", "'per_label' must be an integer from 1"),
    ("prompt-failures", "fail_fraction=0.0", "'fail_fraction' must be a number above 0"),
    ("prompt-failures", "lm='sagekit-test/not-downloaded'", "not in the local Hugging Face cache"),
    ("prompt-failures", "taxonomy=[]", "must be a list of 1"),
    ("distorted-latents", "judge='ensemble(most):toy-resnet+toy-edge'", "unknown agreement rule 'most'"),
    ("distorted-latents", "judge='ensemble:toy-resnet*x+toy-edge'", "'toy-resnet*x' is not"),
    ("distorted-latents", "judge='edge(prewitt):toy-resnet'", "unknown edge method 'prewitt'"),
    ("distorted-latents", "judge='ensemble:toy-resnet+timm:no_such_model_x'", "no_such_model_x"),
    ("distorted-latents", "verifier='toy-resnet'", "shares toy-resnet with judge 'toy-ensemble'"),
    ("unrelated-latents", "verifier='edge:toy-mobilenet'", "must hold no judge the search uses"),
    ("distorted-latents", "mode='fast'", "must be one of 'exact', 'residual'"),
    ("distorted-latents", "steps=1", "'k' (2) must be at most steps (1)"),
    ("distorted-latents", "lr=0.0", "'lr' must be a number above 0"),
    ("adversarial-tokens", "targets=['purple dragon']", "'purple dragon' is not a label"),
    ("adversarial-tokens", "n_train_labels=30", "at most 35"),
    ("adversarial-tokens", "objective='magic'", "'objective' must be one of"),
    ("implosion", "ks=[0, 40]", "at most 8"),
    ("implosion", "budget=3000", "at most 'n_train'"),
    ("implosion", "budget=2", "at least max(ks) = 8"),
    ("implosion", "trainable='some'", "'trainable' must be one of"),
]


@pytest.mark.parametrize("study,assignment,message", BAD)
def test_bad_values_are_refused_before_any_work(study, assignment, message, tmp_path, capsys, monkeypatch):
    import papermill

    from sagekit.models import registry

    def never(*args, **kwargs):
        raise AssertionError("a kernel or a model was started for bad input")

    for module, name in [(papermill, "execute_notebook"), (registry, "load_generator"), (registry, "load_judge")]:
        monkeypatch.setattr(module, name, never)
    out = tmp_path / "out"
    assert main(["run", study, "-p", assignment, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_relative_store_dirs_are_checked_from_the_notebook_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    params = {**notebook_parameters(STUDIES["seed-shifts"].path), "store_dir": "sub/store"}
    validate("seed-shifts", params, tmp_path)  # creatable: fine, and nothing is created
    assert not (tmp_path / "sub").exists()
    with pytest.raises(ParameterError, match="is not a folder"):
        validate("seed-shifts", {**params, "store_dir": "file/store"}, tmp_path)


def test_a_garbled_results_store_is_refused_before_the_kernel_starts(tmp_path):
    """It was found only inside the kernel, about 45 s in."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "results.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    params = {**STUDIES["seed-shifts"].schema.defaults, "store_dir": "store"}
    with pytest.raises(ParameterError, match=r"results.sqlite (is not a readable results store|fails SQLite)"):
        validate("seed-shifts", params, tmp_path)
    from sagekit.store import ResultStore

    ResultStore(tmp_path / "fine").put_batch("t", [{"seed": 1}], [{"x": 1.0}])
    assert validate("seed-shifts", {**params, "store_dir": "fine"}, tmp_path) > 0


def test_a_label_file_is_a_label_set(tmp_path):
    from sagekit.toy.scenes import LABELS

    (tmp_path / "labels.txt").write_text("\n".join(LABELS[:5]) + "\n\n")
    params = {**notebook_parameters(STUDIES["seed-shifts"].path), "label_set": str(tmp_path / "labels.txt")}
    assert validate("seed-shifts", {**params, "n_labels": 5}, tmp_path) > 0
    (tmp_path / "other.txt").write_text("a purple dragon\n")
    with pytest.raises(ParameterError, match="does not know: 'a purple dragon'"):
        validate("seed-shifts", {**params, "label_set": str(tmp_path / "other.txt")}, tmp_path)


def test_protocols_fill_what_is_left_auto_and_their_images_are_counted():
    from sagekit.studies.defaults import resolve
    from sagekit.studies.seed_shifts import PROTOCOLS

    defaults = notebook_parameters(STUDIES["seed-shifts"].path)
    base = STUDIES["seed-shifts"].path.parent
    toy = PROTOCOLS["toy"]
    per_seed = len(defaults["models"]) * len(toy["guidance"]) * toy["n_labels"]
    conditions = sum(len(v) for v in toy["shifts"].values())
    assert validate("seed-shifts", defaults, base) == per_seed * (toy["baseline_seeds_per_cell"]
                                                                  + conditions * toy["seeds_per_cell"])
    # the paper's protocol: its ImageNet-100 is refused by the toy world's judge ...
    with pytest.raises(ParameterError, match="does not know"):
        validate("seed-shifts", {**defaults, "protocol": "paper"}, base)
    # ... so on the toy labels: 9 UMS + 9 URMS + 7 SDS + 49 MS + 4 PAS levels, 100 images each, guidance 7.5 alone
    paper = {**defaults, "protocol": "paper", "label_set": "toy"}
    assert validate("seed-shifts", paper, base) == len(defaults["models"]) * 36 * (100 + 78 * 100)
    resolved = resolve("seed-shifts", paper)
    assert (resolved["shifts"], resolved["guidance"], resolved["steps"], resolved["n_labels"]) == ("paper", [7.5], 50, 100)
    assert resolved["judge"] == "toy-ensemble" and resolved["dtype"] == "auto"  # the precision's "auto" is its own
    # a value given explicitly wins over the protocol's
    mine = resolve("seed-shifts", {**paper, "n_labels": 2, "guidance": [7.5, 1.0]})
    assert (mine["n_labels"], mine["guidance"], mine["seeds_per_cell"]) == (2, [7.5, 1.0], 100)
    with pytest.raises(ParameterError, match="'protocol' must be one of"):
        validate("seed-shifts", {**defaults, "protocol": "papers"}, base)


def test_a_label_too_long_for_the_caption_lm_is_refused_before_any_work(tmp_path, capsys):
    """A 17-word label once crashed the prompt search (IndexError) after every model loaded."""
    labels = tmp_path / "long.txt"
    labels.write_text(" ".join(["very"] * 16) + " red circle\n")
    out = tmp_path / "out"
    assert main(["run", "prompt-failures", "-p", f"label_set={str(labels)!r}", "-p", "n_labels=1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "positions" in err and "reads 24" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_huge_value_is_echoed_in_one_short_line(tmp_path, capsys):
    labels = tmp_path / "huge.txt"
    labels.write_text("x" * 5000 + "\n")
    assert main(["run", "seed-shifts", "-p", f"label_set={str(labels)!r}", "-p", "n_labels=1",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not know" in err and "5002 characters" in err and len(err) < 400 and len(err.splitlines()) == 1
    for name in ("judge", "clip", "models"):  # a name no registry knows is cut short too
        value = ["y" * 5000] if name == "models" else "y" * 5000
        assert main(["run", "seed-shifts", "-p", f"{name}={value!r}", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "5002 characters" in err and len(err.splitlines()) == 1 and err.count("y") < 200, err
    for args in (["-p", f"store_dir={'z' * 5000!r}"], ["--out", "z" * 5000]):
        assert main(["run", "seed-shifts", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert "longer than a file system takes" in err and len(err.splitlines()) == 1 and err.count("z") < 200
