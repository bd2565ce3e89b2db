"""``inspect``: figures on real data, warnings that fire when they should, the CLI."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tastemaker.cli import app, main
from tastemaker.data.inspect import gini, inspect_interactions, report_rows, top_share
from tastemaker.data.interactions import Interactions
from tastemaker.data.synth import synthetic_interactions


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["tastemaker", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_hetrec_figures_through_the_cli(hetrec_path):
    result = CliRunner().invoke(app, ["inspect", str(hetrec_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["users"], report["items"], report["interactions"]) == (1892, 17632, 92834)
    assert report["play_counts"]["min"] == 1 and report["play_counts"]["max"] == 352_698
    assert report["items_with_one_listener"] > 0.5 * report["items"]
    joined = " ".join(report["warnings"])
    assert "orders of magnitude" in joined  # raw counts 1 .. 352,698
    assert "single listener" in joined
    assert report["tag_assignments"] > 0
    # user_friends.dat: 25,434 directed links (12,717 mutual friendships), every user has one.
    friends = report["friends"]
    assert friends["links"] == 25_434 and friends["users_with_friends"] == 1892
    assert friends["per_user"]["min"] >= 1


def test_table_output_of_an_ingested_directory(hetrec, tmp_path):
    hetrec.save(tmp_path / "hetrec")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "hetrec")])
    assert result.exit_code == 0, result.output
    assert "17,632" in result.stdout and "Gini" in result.stdout
    assert "warning:" in result.stdout


def test_ingested_synthetic_directory(tmp_path, monkeypatch, capsys):
    data = synthetic_interactions(
        users=300, artists=500, listens=40_000, seed=4, bots=2, bot_share=0.1
    )
    data.save(tmp_path / "ingested")
    code, out, _ = run_main(monkeypatch, capsys, "inspect", str(tmp_path / "ingested"), "--json")
    assert code in (0, None)
    report = json.loads(out)
    assert report["users"] == data.n_users == 302
    assert report["listens"] == 40_000 == report["events"]
    assert report["per_user"]["listens"]["max"] == data.user_items.sum(axis=1).max()
    assert report["per_user"]["listens"]["min"] >= 1
    assert 600 <= report["time_span"]["days"] <= 731
    assert report["busiest_user_day"]["users_over_threshold"] == 2  # the two bots
    assert any("bots" in w for w in report["warnings"])
    assert not any("orders of magnitude" in w for w in report["warnings"])
    labels = [label for label, _ in report_rows(report)]
    assert "time span" in labels and "busiest user-day" in labels
    # The identity rule's counts, stored at ingest, come back: name-only listens of mapped
    # artists were reconciled; the artists MusicBrainz does not know stay keyed by name.
    identity = report["identity"]
    stored = data.source["identity"]
    assert identity["reconciled_listens"] == stored["reconciled_listens"] > 0
    assert identity["unmatched_names"] == stored["unmatched_names"] > 0
    assert identity["ambiguous_names"] == stored["ambiguous_names"]
    assert {"reconciled", "ambiguous names", "name-keyed"} <= set(labels)
    assert report["friends"] is None and "friends" not in labels  # synth has no relation


def test_gini_and_top_share():
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    assert top_share(np.array([99] + [1] * 99), 0.01) == pytest.approx(0.5)
    assert top_share(np.array([5, 5]), 0.01) == pytest.approx(0.5)


def test_warnings_for_single_item_users_and_empty_matrix_shapes():
    # 10 users: 6 with a single item; counts 1 .. 5000 span 3.7 orders of magnitude.
    users = ["a", "a", "a", "b", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    items = ["x", "y", "z", "x", "y", "x", "y", "x", "z", "q", "r", "s", "t"]
    counts = [1, 5000, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    data = Interactions.from_arrays(users, items, counts)
    report = inspect_interactions(data)
    assert report["users_with_one_item"] == 8
    assert report["items_with_one_listener"] == 4
    text = " ".join(report["warnings"])
    assert "single item" in text and "orders of magnitude" in text
    assert report["time_span"] is None and report["busiest_user_day"] is None
    assert report["duplicates_dropped"] is None and report["skipped_rows"] is None
    json.dumps(report)  # JSON-ready

    counted = dataclasses.replace(data, source={"duplicates_dropped": 7, "bad_rows_skipped": 3})
    report = inspect_interactions(counted)
    assert (report["duplicates_dropped"], report["skipped_rows"]) == (7, 3)
    assert ("duplicates dropped", "7") in report_rows(report)


def test_missing_path_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "inspect", str(tmp_path / "nope"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "nope" in err and "Traceback" not in err
