"""The model contract as checks anyone's model can run (as ``lenskit.testing`` does).

``check_model(make)`` fits ``make()`` on small planted data and runs every check: the
interface's shapes and padding, batched lists equal to one-by-one, lists that are the top of
the scores, fold-in of a training history landing near the trained user, candidate sets
(``items=`` / ``exclude=``), similar items, a second fit forgetting the first, saving and
loading without pickle (a corrupted file refused), and scikit-learn hyperparameter semantics
(``get_params`` / ``set_params`` / ``clone``). Each check is also public, with the data
builders (``clusters``, ``checkerboard``, ``with_listen_events``, ``with_item_tags``), so a
test suite can run them one by one. A failed check raises ``AssertionError`` saying what is
wrong. tastemaker's own models run these in ``tests/models/test_models_contract.py`` (see
docs/architecture.md, "Adding a model").
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import read_manifest
from tastemaker.data.interactions import Interactions, ListenEvents
from tastemaker.data.metadata import ItemMetadata, empty_facts
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models.base import Recommender, clone

# Fold-in of a training user's own history: minimum mean top-10 overlap with the trained user.
FOLD_IN_OVERLAP = 0.75


def require(condition: bool, message: str) -> None:
    """``AssertionError(message)`` unless ``condition`` (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


# -- data ------------------------------------------------------------------------------------


def with_listen_events(matrix: sp.spmatrix) -> Interactions:
    """The matrix with ids, plus one listen per pair (each user's listens one minute apart,
    in one session) so that models that need timestamps (sessions) see the same data."""
    coo = sp.coo_matrix(matrix)
    plain = Interactions.from_arrays(
        [f"u{r:03d}" for r in coo.row], [f"i{c:03d}" for c in coo.col], coo.data
    )
    m = plain.user_items
    users = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
    order_in_row = np.arange(m.nnz) - np.repeat(m.indptr[:-1], np.diff(m.indptr))
    timestamps = 1_600_000_000 + users.astype(np.int64) * 86_400 + order_in_row * 60
    return dataclasses.replace(
        plain,
        events=ListenEvents(users, m.indices.astype(np.int32), timestamps),
        last_listened=timestamps,
    )


def with_item_tags(data: Interactions, tags: list[list[str]]) -> Interactions:
    """``data`` with anonymous item metadata: ``tags[i]`` are item i's tags (weight 1 each),
    so that content models (``tags``) run under the same contract."""
    names = sorted({t for item in tags for t in item})
    column = {name: k for k, name in enumerate(names)}
    rows = [i for i, item in enumerate(tags) for _ in item]
    cols = [column[t] for item in tags for t in item]
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(data.n_items, len(names))
    )
    metadata = ItemMetadata(matrix, names, np.zeros(len(names), bool), empty_facts(data.n_items))
    return dataclasses.replace(data, metadata=metadata)


def clusters(seed: int = 3, n_users: int = 80, n_items: int = 100) -> Interactions:
    """Users in 4 taste groups of 25 items each: 10 items from their group, 2 at random.
    Items carry their group's tag and one of five others (for content models)."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(n_items).reshape(4, -1)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        own = rng.choice(groups[u % 4], 10, replace=False)
        other = rng.choice(n_items, 2, replace=False)
        heard = np.union1d(own, other)
        dense[u, heard] = np.ceil(rng.lognormal(2.0, 1.5, len(heard)))
    group_of = np.empty(n_items, np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    data = with_listen_events(sp.csr_matrix(dense))
    # Item ids i000.. sort like their indices, so item index i is column i of ``dense``.
    return with_item_tags(data, [[f"group{group_of[i]}", f"mood{i % 5}"] for i in range(n_items)])


def checkerboard() -> tuple[Interactions, np.ndarray]:
    """20 users x 16 items: even users play even items, odd users odd items, with varied
    play counts; each user's withheld item (one of their parity) is returned beside."""
    rng = np.random.default_rng(7)
    n_users, n_items = 20, 16
    withheld = np.empty(n_users, np.int64)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        liked = np.arange(u % 2, n_items, 2)
        withheld[u] = liked[(u // 2) % len(liked)]
        heard = liked[liked != withheld[u]]
        dense[u, heard] = rng.integers(1, 200, len(heard))
    tags = [["even" if i % 2 == 0 else "odd", f"t{i % 3}"] for i in range(n_items)]
    return with_item_tags(with_listen_events(sp.csr_matrix(dense)), tags), withheld


# -- checks ----------------------------------------------------------------------------------


def assert_batch_equals_one_by_one(model, users: np.ndarray) -> None:
    """Batched recommendations (trained users and folded-in histories) equal one-by-one."""
    ids, scores = model.recommend(users, n=5)
    history = model.user_items_[users]
    folded_ids, folded_scores = model.recommend_for_history(history, n=5)
    for row, user in enumerate(users):
        one_ids, one_scores = model.recommend(np.asarray([user]), n=5)
        np.testing.assert_array_equal(one_ids[0], ids[row])
        np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-5, atol=1e-6)
        h_ids, h_scores = model.recommend_for_history(history[row], n=5)
        np.testing.assert_array_equal(h_ids[0], folded_ids[row])
        np.testing.assert_allclose(h_scores[0], folded_scores[row], rtol=1e-5, atol=1e-6)


def fold_in_overlap(model, data: Interactions) -> float:
    """Mean top-10 overlap between each trained user's list and their history folded in."""
    users = np.arange(data.n_users)
    trained, _ = model.recommend(users, n=10)
    folded, _ = model.recommend_for_history(data.user_items[users], n=10)
    return float(
        np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(trained, folded, strict=True)])
    )


def assert_similar_items_exclude_the_item(model, data: Interactions) -> np.ndarray:
    """Ten similar items per item, never the item itself, in descending order; the ids."""
    items = np.arange(data.n_items)
    ids, scores = model.similar_items(items, n=10)
    require(ids.shape == (data.n_items, 10), f"similar_items gave shape {ids.shape}")
    require(not (ids == items[:, None]).any(), "an item is listed as similar to itself")
    require(
        bool((np.diff(scores, axis=1)[np.isfinite(scores[:, 1:])] <= 0).all()),
        "similar items are not in descending order of similarity",
    )
    return ids


def assert_same_model(loaded, model, data: Interactions) -> None:
    """A loaded model scores users, histories and similar items exactly like the original."""
    require(type(loaded) is type(model), f"loaded a {type(loaded).__name__}")
    require(loaded.get_params() == model.get_params(), "the loaded hyperparameters differ")
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    history = data.user_items[:10]
    np.testing.assert_array_equal(loaded.score_history(history), model.score_history(history))
    np.testing.assert_array_equal(
        loaded.similar_items(np.arange(5), 5)[0], model.similar_items(np.arange(5), 5)[0]
    )


def assert_refit_is_fresh(refitted, fresh, data: Interactions, history_rtol: float = 1e-5) -> None:
    """A model fitted twice scores like one fitted once on the second data.

    ``history_rtol``: models whose fold-in is itself an optimisation (the NCF models' Adam
    steps) amplify last-bit differences of the weights (another BLAS / OpenMP team width
    between the two fits) into ~1e-3; state carried over from the first fit would be far
    larger."""
    require(refitted.n_items_ == fresh.n_items_ == data.n_items, "item counts differ")
    users = np.arange(data.n_users)
    np.testing.assert_allclose(refitted.score(users), fresh.score(users), rtol=1e-5, atol=1e-6)
    history = data.user_items[:5]
    np.testing.assert_allclose(
        refitted.score_history(history), fresh.score_history(history), rtol=history_rtol, atol=1e-6
    )


def assert_factor_vectors_reproduce_scores(
    model,
    data: Interactions,
    users: np.ndarray,
    history_rows: int,
    rtol: float = 1e-7,
    atol: float = 0.0,
    history_atol: float | None = None,
) -> None:
    """User (and history) vectors dotted with item vectors give the model's scores."""
    np.testing.assert_allclose(
        model.user_vectors(users) @ model.item_vectors().T, model.score(users), rtol, atol
    )
    history = data.user_items[:history_rows]
    np.testing.assert_allclose(
        model.history_vectors(history) @ model.item_vectors().T,
        model.score_history(history),
        rtol,
        atol if history_atol is None else history_atol,
    )


def assert_ranks_the_withheld_item_first(model: Recommender, by_taste: bool | None = None) -> None:
    """On ``checkerboard()`` (``model`` fitted on it): lists of the right shape, unheard
    items only, best first; a model that ranks by taste (``by_taste``, by default its
    ``personalised``) ranks each user's withheld item first, for the trained user and for the
    same history folded in."""
    data, withheld = checkerboard()
    users = np.arange(data.n_users)
    ids, scores = model.recommend(users, n=3)
    require(ids.shape == scores.shape == (data.n_users, 3), f"recommend gave shape {ids.shape}")
    require(bool(((ids >= 0) & (ids < data.n_items)).all()), "an index outside the catalogue")
    heard = data.user_items.toarray() > 0
    require(not heard[users[:, None], ids].any(), "recommended an item the user has heard")
    require(bool((np.diff(scores, axis=1) <= 0).all()), "scores must come best first")
    if not (model.personalised if by_taste is None else by_taste):
        return
    np.testing.assert_array_equal(ids[:, 0], withheld, "the withheld item is not first")
    if model.fold_in:
        folded, _ = model.recommend_for_history(data.user_items, n=1)
        np.testing.assert_array_equal(folded[:, 0], withheld, "folded in: not first")


def assert_lists_are_the_top_of_the_scores(model: Recommender, data: Interactions) -> None:
    """Whatever ranking shortcut a model takes, it returns the base class's lists: the top of
    ``score`` / ``score_history`` with heard items masked."""
    users = np.arange(data.n_users)
    for exclude in (True, False):
        ids, scores = model.recommend(users, n=10, exclude_heard=exclude)
        ref_ids, ref_scores = Recommender.recommend(model, users, n=10, exclude_heard=exclude)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    if model.fold_in:
        history = data.user_items[:20]
        ids, _ = model.recommend_for_history(history, n=10)
        ref_ids, _ = Recommender.recommend_for_history(model, history, n=10)
        np.testing.assert_array_equal(ids, ref_ids)


def _is_pickle(path: Path) -> bool:
    head = path.read_bytes()[:2]
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def assert_saves_and_loads_without_pickle(
    model: Recommender, data: Interactions, directory: Path
) -> None:
    """``save`` writes no pickle, ``load`` gives the same model, and a corrupted array file
    is refused with an ``ArtifactError``. ``directory`` must not exist yet."""
    saved = model.save(directory)
    files = [p for p in saved.rglob("*") if p.is_file()]
    pickles = [p.name for p in files if _is_pickle(p) or p.suffix in {".pkl", ".pickle"}]
    require(not pickles, f"pickled files: {pickles}")
    for npz in saved.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as arrays:
            objects = [key for key in arrays.files if arrays[key].dtype == object]
            require(not objects, f"{npz.name}: object arrays {objects}")
    require(read_manifest(saved, verify=True)["model"] == model.name, "the manifest's model")
    assert_same_model(type(model).load(saved), model, data)
    target = saved / "model.npz"
    content = bytearray(target.read_bytes())
    content[len(content) // 2] ^= 0xFF
    target.write_bytes(bytes(content))
    try:
        type(model).load(saved)
    except ArtifactError:
        return
    raise AssertionError("a corrupted model.npz was loaded")


def assert_candidate_sets(model: Recommender, data: Interactions) -> None:
    """``recommend(users, n, items=, exclude=)``: the top of the scores restricted to the
    candidate set, with the excluded items gone, for training users and folded-in
    histories; ``exclude`` alone removes items from every list; bad sets are UsageErrors."""
    users = np.arange(0, data.n_users, 5)
    rng = np.random.default_rng(0)
    candidates = rng.choice(data.n_items, min(30, data.n_items), replace=False)
    exclude = candidates[:10]
    ids, scores = model.recommend(users, n=25, items=candidates, exclude=exclude)
    allowed = set(candidates.tolist()) - set(exclude.tolist())
    heard = data.user_items.toarray() > 0
    full = model.score(users)
    for row, user in enumerate(users):
        listed = ids[row][ids[row] >= 0]
        require(set(listed.tolist()) <= allowed, "returned an item outside items= or in exclude=")
        require(not heard[user, listed].any(), "returned a heard item")
        expected = [i for i in allowed if not heard[user, i] and np.isfinite(full[row, i])]
        expected.sort(key=lambda i: (-full[row, i], i))
        require(listed.tolist() == expected[:25], "not the top of the restricted scores")
        require(bool((ids[row][len(listed) :] == -1).all()), "a short list is not -1 padded")
        require(bool(np.isneginf(scores[row][len(listed) :]).all()), "padding is not -inf")
    if model.fold_in:
        history = data.user_items[users]
        folded, _ = model.recommend_for_history(history, n=25, items=candidates, exclude=exclude)
        for row in folded:
            require(set(row[row >= 0].tolist()) <= allowed, "folded in: outside the candidates")
    everyone = np.arange(data.n_users)
    plain, _ = model.recommend(everyone, n=5)
    banned = np.unique(plain[:, 0])
    ids, _ = model.recommend(everyone, n=5, exclude=banned)
    require(not np.isin(ids, banned).any(), "exclude= alone left an item in a list")
    for bad, word in (({"items": [data.n_items]}, "outside"), ({"exclude": [0.5]}, "integers")):
        try:
            model.recommend(np.arange(2), n=3, **bad)
        except UsageError as exc:
            require(word in str(exc), f"the error for {bad} does not say {word!r}: {exc}")
        else:
            raise AssertionError(f"recommend accepted {bad}")


def assert_pairwise_similarity(model: Recommender, items: np.ndarray) -> None:
    """``pairwise_similarity(items)`` is ``(k, k)`` and agrees with the similarity to all
    items (models that compute it without a pass over the catalogue)."""
    pairwise = model.pairwise_similarity(items)
    require(pairwise.shape == (len(items), len(items)), f"shape {pairwise.shape}")
    full = model._similar(items)[:, items]
    np.testing.assert_allclose(pairwise, full, rtol=1e-4, atol=1e-5)


def assert_hyperparameters(model: Recommender) -> None:
    """scikit-learn semantics: ``get_params`` round-trips through the constructor, ``clone``
    is unfitted with equal (copied) parameters, ``set_params`` returns the model and refuses
    an unknown name, and the model's own parameters pass its rules."""
    params = model.get_params()
    require(set(params) == set(model.param_names()), "get_params names the constructor's")
    require(type(model)(**params).get_params() == params, "get_params does not round-trip")
    twin = clone(model)
    require(twin is not model and twin.get_params() == params, "clone changed the parameters")
    require(not hasattr(twin, "user_items_"), "clone is fitted")
    model.validate_params()
    before = copy.deepcopy(params)
    require(model.set_params(**before) is model, "set_params does not return the model")
    try:
        model.set_params(no_such_parameter=1)
    except UsageError:
        pass
    else:
        raise AssertionError("set_params accepted an unknown parameter")
    require(model.get_params() == before, "a refused set_params changed the model")


def check_model(
    make: Callable[[], Recommender],
    fold_in_overlap_floor: float = FOLD_IN_OVERLAP,
) -> None:
    """Run the whole contract on ``make()`` (a new, unfitted model each call; keep it small
    and fast: it is fitted four times on data of at most 80 users x 100 items)."""
    model = make()
    assert_hyperparameters(model)
    assert_ranks_the_withheld_item_first(model.fit(checkerboard()[0]))
    data = clusters()
    model = make().fit(data)
    assert_batch_equals_one_by_one(model, np.arange(0, data.n_users, 7))
    assert_lists_are_the_top_of_the_scores(model, data)
    if model.fold_in:
        overlap = fold_in_overlap(model, data)
        require(overlap >= fold_in_overlap_floor, f"fold-in overlap {overlap:.2f}")
    assert_similar_items_exclude_the_item(model, data)
    assert_candidate_sets(model, data)
    assert_pairwise_similarity(model, np.array([3, 17, 42, 8]))
    first = clusters(seed=11, n_users=60, n_items=40)
    assert_refit_is_fresh(make().fit(first).fit(data), model, data)
    with tempfile.TemporaryDirectory(prefix="tastemaker-check-") as tmp:
        assert_saves_and_loads_without_pickle(model, data, Path(tmp) / "model")
