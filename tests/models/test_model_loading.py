"""Model and data folders whose content is malformed (with valid checksums) are an error, never
a crash: issue 13, section 2, one test per class, every example of the issue kept.

Each case loads a tampered copy and expects an ``ArtifactError`` naming the problem; the CLI
turns it into one line and exit 2. Cases that crashed the process natively (LightGBM's abort,
scipy's segfault) also run once through a real ``tastemaker`` process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli
from tampering import edit_arrays, edit_manifest, tampered
from tastemaker.artifacts import MANIFEST, read_manifest
from tastemaker.data.interactions import Interactions
from tastemaker.data.synth import synthetic_interactions
from tastemaker.errors import ArtifactError
from tastemaker.models import MODELS, create_model, load_model, model_class
from tastemaker.models.base import Recommender


@pytest.fixture(scope="module")
def interactions():
    return synthetic_interactions(users=80, artists=150, listens=5000, seed=3)


@pytest.fixture(scope="module")
def saved(interactions, tmp_path_factory):
    """One small saved model of each kind the cases need, and an ingested data directory."""
    root = tmp_path_factory.mktemp("saved")
    specs = {
        "popularity": {},
        "als": {"factors": 8, "iterations": 3},
        "bpr": {"factors": 8, "iterations": 5},
        "itemknn": {},
        "ease": {},
        "sessions": {},
        "hybrid": {"generators": "als,itemknn,popularity", "iterations": 8, "candidates": 30},
        "gmf": {"factors": 8, "epochs": 1, "patience": 0},
    }
    dirs = {
        name: create_model(name, **p).fit(interactions).save(root / name)
        for name, p in specs.items()
    }
    dirs["data"] = interactions.save(root / "data")
    return dirs


def refused(directory, *fragments: str) -> str:
    """Load ``directory``; it must raise ArtifactError whose message holds every fragment."""
    with pytest.raises(ArtifactError) as caught:
        load_model(directory)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    return message


# -- strict manifests ---------------------------------------------------------------------------
def set_key(key, value):
    return edit_manifest(lambda m: m.__setitem__(key, value))


def drop_key(key):
    return edit_manifest(lambda m: m.pop(key))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (set_key("format_version", "1"), "format_version must be a positive integer, not '1'"),
        (set_key("format_version", None), "format_version must be a positive integer, not None"),
        (set_key("format_version", -1), "format_version must be a positive integer, not -1"),
        (set_key("format_version", True), "format_version must be a positive integer, not True"),
        (set_key("format_version", 2), "format version 2 is newer than this tastemaker reads"),
        (set_key("kind", 5), "not a tastemaker manifest"),
        (set_key("model", ["als"]), "names no known model"),
        (set_key("params", ["factors"]), "params must be a mapping"),
        (set_key("data_fingerprint", 7), "no data_fingerprint"),
        (set_key("n_items", 3), "the manifest says 3 items"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_manifest_fields_are_strictly_typed(saved, tmp_path, change, why):
    refused(tampered(saved["popularity"], tmp_path / "m", change), why)


def test_a_huge_format_version_is_refused_in_one_line(saved, tmp_path):
    def huge(directory, digits):
        text = (directory / MANIFEST).read_text()
        text = text.replace('"format_version": 1', f'"format_version": {"9" * digits}', 1)
        (directory / MANIFEST).write_text(text)

    # Over Python's 4,300-digit limit for int parsing, and just under it.
    refused(tampered(saved["popularity"], tmp_path / "a", lambda d: huge(d, 5000)), "unreadable")
    refused(tampered(saved["popularity"], tmp_path / "b", lambda d: huge(d, 4000)), "a huge int")


def test_non_json_numbers_and_deep_nesting_in_a_manifest_are_refused(saved, tmp_path):
    def raw(text_change):
        def apply(directory):
            path = directory / MANIFEST
            path.write_text(text_change(path.read_text()))

        return apply

    nan = raw(lambda t: t.replace('"n_items": ', '"n_items": NaN, "x": ', 1))
    deep = raw(
        lambda t: t.replace(
            '"n_items": ', '"deep": ' + "[" * 100_000 + "]" * 100_000 + ', "n_items": ', 1
        )
    )
    refused(tampered(saved["popularity"], tmp_path / "nan", nan), "NaN is not JSON")
    refused(tampered(saved["popularity"], tmp_path / "deep", deep), "nested too deeply")


def test_files_must_be_a_complete_mapping_of_checksums(saved, tmp_path):
    directory = saved["popularity"]
    # A list, a missing key (it used to turn checking off), a path outside, a bad digest.
    refused(
        tampered(directory, tmp_path / "list", set_key("files", ["model.npz"])), "'files' must map"
    )
    refused(tampered(directory, tmp_path / "none", drop_key("files")), "'files' must map")
    outside = tampered(directory, tmp_path / "outside", lambda d: None)
    manifest = json.loads((outside / MANIFEST).read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (outside / MANIFEST).write_text(json.dumps(manifest))
    refused(outside, "is not a path inside it")
    manifest["files"].pop("../../etc/passwd")
    manifest["files"]["model.npz"] = "not-a-digest"
    (outside / MANIFEST).write_text(json.dumps(manifest))
    refused(outside, "is not a SHA-256 hex digest")


def test_every_file_of_the_tree_is_covered_including_nested_manifests(saved, tmp_path):
    listed = read_manifest(saved["hybrid"])["files"]
    assert {"data/manifest.json", "generators/als/manifest.json"} <= set(listed)
    # A nested manifest changed after the fact (its own checksums made to match): refused.
    copy = tampered(saved["hybrid"], tmp_path / "nested", lambda d: None)
    nested = copy / "generators" / "als" / MANIFEST
    manifest = json.loads(nested.read_text())
    manifest["params"]["factors"] = 9
    nested.write_text(json.dumps(manifest))
    refused(copy, "generators/als/manifest.json: checksum mismatch")
    # A file nobody listed.
    extra = tampered(saved["popularity"], tmp_path / "extra", lambda d: None)
    (extra / "notes.txt").write_text("hello")
    refused(extra, "notes.txt is not covered by the manifest's checksums")
    linked = tampered(saved["popularity"], tmp_path / "link", lambda d: None)
    (linked / "model.npz").unlink()
    (linked / "model.npz").symlink_to("/dev/zero")
    refused(linked, "model.npz is a link")


@pytest.mark.parametrize(
    ("model", "params", "why"),
    [
        ("als", {"factors": "8"}, "factors='8' is not a valid int"),
        ("als", {"factors": 8.5}, "factors=8.5 is not a valid int"),
        ("als", {"factors": True}, "factors=True is not a valid int"),
        ("als", {"weighting": 3}, "weighting=3 is not a valid str"),
        ("als", {"factors": 10**20}, "too large"),
        ("als", {"warp_speed": 9}, "has no parameter(s) ['warp_speed']"),
        ("itemknn", {"normalize": "yes"}, "normalize='yes' is not a valid bool"),
    ],
)
def test_unknown_or_mistyped_params_are_refused(saved, tmp_path, model, params, why):
    change = edit_manifest(lambda m: m["params"].update(params))
    refused(tampered(saved[model], tmp_path / "m", change), why)


# -- CSR matrices before scipy --------------------------------------------------------------------
def matrix_change(change):
    return edit_arrays("data/matrix.npz", change)


def reversed_indptr(a):
    a["indptr"] = a["indptr"][::-1].copy()  # scipy segfaulted on this (exit 139)


def short_indptr(a):
    a["indptr"] = a["indptr"][:-1].copy()


def far_indices(a):
    a["indices"] = a["indices"].copy()
    a["indices"][5] = np.iinfo(np.int32).max  # drove memory to 15 GiB, then OOM


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (reversed_indptr, "indptr must rise from 0 to the"),
        (short_indptr, "indptr has shape"),
        (far_indices, "indices holds 2147483647; must be below"),
        (lambda a: a.__setitem__("counts", np.full_like(a["counts"], np.nan)), "NaN"),
        (lambda a: a.__setitem__("counts", -a["counts"]), "below 0"),
        (
            lambda a: a.__setitem__("shape", np.asarray([80, 10**9])),
            "is 80 x 1000000000; expected (users=80, items=",
        ),
        (lambda a: a.__setitem__("indices", a["indices"].astype(np.float32)), "1-d integer array"),
        (
            lambda a: a.__setitem__("last_listened", a["last_listened"][:3]),
            "last_listened has shape",
        ),
    ],
    ids=[
        "reversed-indptr",
        "short-indptr",
        "far-index",
        "nan",
        "negative",
        "shape",
        "dtype",
        "last",
    ],
)
def test_csr_invariants_are_checked_before_scipy(saved, tmp_path, change, why):
    bad = tampered(saved["data"], tmp_path / "data", lambda d: edit_arrays("matrix.npz", change)(d))
    with pytest.raises(ArtifactError, match=re.escape(why)):
        Interactions.load(bad)
    # The same matrix inside a model folder (its catalogue).
    refused(tampered(saved["popularity"], tmp_path / "model", matrix_change(change)), why)


def test_a_model_csr_matrix_is_checked_too(saved, tmp_path):
    def bad_similarity(a):
        a["similarity_indptr"] = a["similarity_indptr"].copy()
        a["similarity_indptr"][3] = 10**6

    refused(
        tampered(saved["itemknn"], tmp_path / "knn", edit_arrays("model.npz", bad_similarity)),
        "similarity_indptr must rise",
    )
    far = edit_arrays("model.npz", lambda a: a["sim_indices"].__setitem__(0, 10**6))
    refused(tampered(saved["sessions"], tmp_path / "sessions", far), "sim_indices holds 1000000")


def test_npz_headers_must_match_their_sizes(saved, tmp_path):
    def lie(directory):  # a header claiming a 10^6 x 10^6 array, followed by 16 bytes
        import io
        import zipfile

        member = io.BytesIO()
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
        np.lib.format.write_array_header_1_0(member, header)
        with zipfile.ZipFile(directory / "model.npz", "w") as archive:
            archive.writestr("item_scores.npy", member.getvalue() + b"\0" * 16)

    refused(
        tampered(saved["popularity"], tmp_path / "m", lie), "its header does not match its size"
    )


# -- arrays against the catalogue and the params -------------------------------------------------
@pytest.mark.parametrize(
    ("model", "change", "why"),
    [
        # 190 of 200 requests answered 500 with this one.
        (
            "als",
            lambda a: a.__setitem__("user_factors", a["user_factors"][:10]),
            "user_factors has shape (10, 8); expected (users=80, factors=8)",
        ),
        (
            "als",
            lambda a: a.__setitem__("item_factors", a["item_factors"][:, :4]),
            ("has shape (", "factors=8)"),
        ),
        ("als", lambda a: a["item_factors"].__setitem__((3, 2), np.nan), "item_factors holds NaN"),
        ("als", lambda a: a.__setitem__("user_factors", a["user_factors"].astype(str)), "holds <U"),
        (
            "als",
            lambda a: a.pop("weighting_item_listeners"),
            "'weighting_item_listeners' is missing",
        ),
        ("als", lambda a: a.__setitem__("extra", np.zeros(3)), "unexpected array(s) ['extra']"),
        (
            "bpr",
            lambda a: a.__setitem__("fold_in_map", a["fold_in_map"][:4]),
            "fold_in_map has shape",
        ),
        (
            "popularity",
            lambda a: a.__setitem__("item_scores", a["item_scores"][:-1]),
            "item_scores has shape (",
        ),
        ("ease", lambda a: a["kept_items"].__setitem__(0, 10**6), "kept_items holds 1000000"),
        (
            "hybrid",
            lambda a: a.__setitem__("feature_names", a["feature_names"][::-1].copy()),
            "feature_names are not the features",
        ),
        (
            "hybrid",
            lambda a: a.__setitem__("generator_names", np.asarray(["als", "hybrid"])),
            "is not a list of generators",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 12 else None,
)
def test_arrays_are_checked_against_catalogue_and_params(saved, tmp_path, model, change, why):
    why = why if isinstance(why, tuple) else (why,)
    refused(tampered(saved[model], tmp_path / "m", edit_arrays("model.npz", change)), *why)


def test_a_generator_inside_the_hybrid_is_checked_like_any_model(saved, tmp_path):
    rows = edit_arrays(
        "generators/als/model.npz", lambda a: a.__setitem__("item_factors", a["item_factors"][:9])
    )
    refused(tampered(saved["hybrid"], tmp_path / "m", rows), "item_factors has shape (9, 32)")


def test_every_registered_model_declares_its_arrays():
    for name in MODELS:
        cls = model_class(name)
        assert cls._state_spec is not Recommender._state_spec, name


# -- LightGBM text, which aborts the process -------------------------------------------------------
def ranker_change(change):
    def apply(directory):
        path = directory / "ranker.txt"
        path.write_text(change(path.read_text()))

    return apply


def truncated(text):  # LightGBM aborted (exit 134) on this
    return text[: len(text) // 2]


def bad_child(text):
    return re.sub(r"left_child=(-?\d+)", "left_child=77", text, count=1)


def cyclic(text):  # node 1's left child is node 0: prediction would loop for ever
    return re.sub(r"left_child=(-?\d+) (-?\d+)", r"left_child=\1 0", text, count=1)


def bad_leaf(text):
    return re.sub(r"leaf_value=\S+", "leaf_value=nan", text, count=1)


def bad_feature(text):
    return re.sub(r"split_feature=\d+", "split_feature=999", text, count=1)


def lying_sizes(text):  # passes the structure check; LightGBM itself aborts on it
    return re.sub(
        r"tree_sizes=.*", lambda m: "tree_sizes=" + " ".join(["100"] * len(m.group().split())), text
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (truncated, "truncated LightGBM model"),
        (bad_child, "do not form a binary tree"),
        (cyclic, "do not form a binary tree"),
        (bad_leaf, "leaf_value holds NaN"),
        (bad_feature, "split_feature names a feature outside"),
        (lying_sizes, "a check process crashed"),
    ],
    ids=["truncated", "child", "cycle", "leaf", "feature", "sizes"],
)
def test_a_malformed_ranker_is_an_error_not_an_abort(saved, tmp_path, change, why):
    refused(tampered(saved["hybrid"], tmp_path / "m", ranker_change(change)), "ranker.txt", why)


# -- NCF weights -----------------------------------------------------------------------------------
def weights_change(change):
    def apply(directory):
        from safetensors.torch import load_file, save_file

        path = directory / "weights.safetensors"
        state = load_file(str(path))
        change(state)
        save_file(state, str(path))

    return apply


def test_ncf_weights_are_checked_against_the_network_before_use(saved, interactions, tmp_path):
    import torch

    def fewer_items(state):
        name = next(k for k, v in state.items() if v.shape[0] == interactions.n_items)
        state[name] = state[name][:100].clone()

    def nan(state):
        name = next(iter(state))
        state[name] = torch.full_like(state[name], float("nan"))

    def doubles(state):
        name = next(iter(state))
        state[name] = state[name].double()

    gmf = saved["gmf"]
    refused(
        tampered(gmf, tmp_path / "rows", weights_change(fewer_items)),
        f"the network needs F32 [{interactions.n_items}, 8]",
    )
    refused(tampered(gmf, tmp_path / "nan", weights_change(nan)), "NaN or infinite weights")
    refused(tampered(gmf, tmp_path / "f64", weights_change(doubles)), "is F64")
    # Trained on a GPU, loaded where there is none: served from the CPU.
    if not torch.cuda.is_available():
        cuda = tampered(
            gmf, tmp_path / "cuda", edit_manifest(lambda m: m["params"].update(device="cuda"))
        )
        model = load_model(cuda)
        assert model.device == "cuda" and model.device_.type == "cpu"
    # A factors value that would allocate terabytes is compared on the meta device: no memory.
    huge = edit_manifest(lambda m: m["params"].update(factors=10**9))
    refused(tampered(gmf, tmp_path / "huge", huge), "the network needs F32 [80, 1000000000]")


# -- the command line ------------------------------------------------------------------------------
def test_the_cli_answers_each_malformed_folder_with_one_line(saved, tmp_path, capsys):
    cases = {
        "version": tampered(saved["popularity"], tmp_path / "v", set_key("format_version", "1")),
        "rows": tampered(
            saved["als"],
            tmp_path / "r",
            edit_arrays(
                "model.npz", lambda a: a.__setitem__("user_factors", a["user_factors"][:10])
            ),
        ),
        "indptr": tampered(saved["popularity"], tmp_path / "i", matrix_change(reversed_indptr)),
    }
    for name, directory in cases.items():
        for command in (
            ("recommend", directory, "--user", "u0"),
            ("similar", directory, "--item", "x"),
        ):
            code, _, err = run_cli(capsys, *command)
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, (name, err)


def test_native_crashes_stay_out_of_the_process(saved, tmp_path):
    """A real ``tastemaker`` process: a truncated ranker (LightGBM's abort, exit 134) and a bad
    indptr (scipy's segfault, exit 139) end in exit 2 and one line."""
    for directory in (
        tampered(saved["hybrid"], tmp_path / "ranker", ranker_change(truncated)),
        tampered(saved["hybrid"], tmp_path / "indptr", matrix_change(reversed_indptr)),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tastemaker.cli import main; main()",
                "recommend",
                str(directory),
                "--user",
                "u0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [
            line
            for line in done.stderr.splitlines()
            if line.strip() and not line.startswith("[LightGBM]")
        ]
        assert done.returncode == 2 and len(lines) == 1, done.stderr


@pytest.mark.parametrize("command", ["recommend", "similar"])
def test_n_is_capped_as_the_api_caps_it(saved, interactions, capsys, command):
    target = (
        ("--user", interactions.users.id(0))
        if command == "recommend"
        else ("--item", interactions.items.id(0))
    )
    code, _, err = run_cli(capsys, command, saved["als"], *target, "--n", "1000000000")
    assert (
        code == 2 and "--n must be between 1 and 1000" in err and len(err.strip().splitlines()) == 1
    )
    code, out, _ = run_cli(capsys, command, saved["als"], *target, "--n", "1000")
    assert code == 0 and out


def test_good_folders_still_load_and_rehashing_changes_nothing(saved, tmp_path):
    for name in ("popularity", "hybrid", "gmf"):
        copy = tampered(saved[name], tmp_path / name, lambda d: None)
        assert {**read_manifest(copy), "files": None} == {
            **read_manifest(saved[name]),
            "files": None,
        }
        assert load_model(copy).name == name
