"""Outputs (issue 13, sections 1 and 5), one test per example, grouped by class: what
``--out`` / ``--report`` / ``--json`` may replace, one writer at a time, what a killed writer
leaves, tune runs sharing a study, modes from the umask. Every class has one guard, in
``tastemaker.artifacts`` (``check_output``, the lock, ``_recover``), so the commands tested
here stand for every command that writes.

Writers in other processes are real processes (``subprocess``); the ones that must stop at a
given point replace ``artifacts._checkpoint`` (or a step of the search) with a pause that
says where it stopped, and the test kills or releases them from there.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import invoke_cli, run_cli
from tastemaker import artifacts
from tastemaker.artifacts import (
    atomic_directory,
    atomic_write_json,
    claim_output,
    file_lock,
    output_kind,
    read_manifest,
    release_outputs,
    write_manifest,
)
from tastemaker.data.interactions import Interactions
from tastemaker.errors import ArtifactError
from tastemaker.evaluation.report import write_page

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def plays_csv(path: Path, users: int = 60, items: int = 30) -> Path:
    """Listens of users in three taste groups (enough structure for a quick tune)."""
    lines = ["user,artist,count"]
    per_group = items // 3
    for u in range(users):
        group = u % 3
        for i in range(per_group):
            if (u + i) % 4:
                item = group * per_group + i
                lines.append(f"u{u},artist {item},{1 + (u * item) % 7}")
        lines.append(f"u{u},artist {(u * 7) % items},1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def hetrec_folder(path: Path) -> Path:
    """A HetRec 2011 folder in miniature (the raw files a bad --out would delete)."""
    path.mkdir(parents=True)
    rows = [f"{u}\t{a}\t{10 * u + a}" for u in range(1, 9) for a in range(1, 7) if (u + a) % 3]
    (path / "user_artists.dat").write_text("userID\tartistID\tweight\n" + "\n".join(rows) + "\n")
    names = [f"{a}\tArtist {a}\thttp://x\thttp://y" for a in range(1, 7)]
    (path / "artists.dat").write_text("id\tname\turl\tpictureURL\n" + "\n".join(names) + "\n")
    (path / "readme.txt").write_text("the raw data set\n")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def refused(capsys, *args, expect: str) -> str:
    """Run the CLI expecting exit 2 with one line containing ``expect``; that line."""
    code, _, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expect in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def ok(capsys, *args) -> str:
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    return err


@pytest.fixture(scope="module")
def plays(tmp_path_factory) -> Path:
    return plays_csv(tmp_path_factory.mktemp("source") / "plays.csv")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, plays) -> Path:
    out = tmp_path_factory.mktemp("ingested") / "data"
    assert invoke_cli("ingest", plays, "--out", out) == 0
    return out


@pytest.fixture(autouse=True)
def _no_claims_left():
    yield
    release_outputs()  # a test that claims and fails must not leave a lock to the next


# -- 1. what an output may replace ----------------------------------------------------------------


def test_ingest_refuses_a_folder_of_the_users_own_files(plays, tmp_path, capsys):
    """`ingest plays.csv --out ~/music` deleted notes.txt and a subfolder."""
    music = tmp_path / "music"
    (music / "albums").mkdir(parents=True)
    (music / "notes.txt").write_text("mine")
    (music / "albums" / "list.txt").write_text("mine too")
    before = snapshot(music)
    line = refused(capsys, "ingest", plays, "--out", music, expect="tastemaker did not write")
    assert "--force" in line
    assert snapshot(music) == before and hidden(tmp_path) == []


def test_force_replaces_a_foreign_folder_whole_and_says_so(plays, tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    (music / "notes.txt").write_text("mine")
    err = ok(capsys, "ingest", plays, "--out", music, "--force")
    assert "replacing it whole (--force)" in err
    assert not (music / "notes.txt").exists()  # replaced, not mixed into
    assert output_kind(music) == "interactions"
    read_manifest(music, kind="interactions")  # every file there is one the manifest lists
    assert hidden(tmp_path) == []


@pytest.mark.parametrize(
    ("where", "expect"), [("same", "is the input"), ("inside", "lies inside the input")]
)
def test_ingest_never_writes_over_its_input_even_with_force(tmp_path, capsys, where, expect):
    """`ingest hetrec/ --out hetrec/` deleted the raw files."""
    raw = hetrec_folder(tmp_path / "hetrec")
    before = snapshot(raw)
    out = raw if where == "same" else raw / "ingested"
    refused(capsys, "ingest", raw, "--out", out, "--force", expect=expect)
    assert snapshot(raw) == before and sorted(p.name for p in tmp_path.iterdir()) == ["hetrec"]


def test_an_output_holding_the_input_or_a_link_to_it_is_refused(tmp_path, capsys):
    raw = hetrec_folder(tmp_path / "data" / "hetrec")
    args = ("ingest", raw, "--force", "--out")
    refused(capsys, *args, tmp_path / "data", expect="contains the input")
    link = tmp_path / "link"
    link.symlink_to(raw)
    refused(capsys, *args, link, expect="is the input")
    assert (raw / "user_artists.dat").is_file()


def test_a_regular_file_is_refused_and_replaced_only_with_force(plays, tmp_path, capsys):
    target = tmp_path / "out"
    target.write_text("a file of mine")
    refused(capsys, "ingest", plays, "--out", target, expect="is a file, not a folder")
    assert target.read_text() == "a file of mine"
    ok(capsys, "ingest", plays, "--out", target, "--force")
    assert output_kind(target) == "interactions"


def test_train_never_replaces_its_data_with_a_model(ingested, capsys):
    """`train D --out D` replaced the data with a model."""
    before = snapshot(ingested)
    args = ("train", ingested, "--model", "popularity", "--out", ingested, "--force")
    refused(capsys, *args, expect="is the input")
    assert snapshot(ingested) == before
    Interactions.load(ingested)


def test_an_output_of_another_kind_needs_force(ingested, tmp_path, capsys):
    other = Interactions.load(ingested).save(tmp_path / "other-data")
    args = ("train", ingested, "--model", "popularity", "--out", other)
    refused(capsys, *args, expect="holds a tastemaker 'interactions', not a 'model'")
    ok(capsys, *args, "--force")
    assert output_kind(other) == "model"


def test_evaluate_report_refuses_a_folder_it_did_not_write(ingested, tmp_path, capsys):
    """`evaluate --report DIR` wiped a folder."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "keep.md").write_text("mine")
    args = ("evaluate", ingested, "--models", "popularity", "--report", folder)
    refused(capsys, *args, expect="tastemaker did not write")
    assert (folder / "keep.md").read_text() == "mine"


def test_outputs_of_the_same_kind_are_replaced(ingested, plays, tmp_path, capsys):
    """Running a command again replaces its own output; an empty folder is fine too."""
    report, results, model = tmp_path / "report", tmp_path / "r.json", tmp_path / "model"
    (tmp_path / "fresh").mkdir()
    args = ("evaluate", ingested, "--models", "popularity")
    for _ in range(2):
        ok(capsys, "ingest", plays, "--out", tmp_path / "fresh")
        ok(capsys, "train", ingested, "--model", "popularity", "--out", model)
        ok(capsys, *args, "--json", results)
        # What every report command writes through (the CLI's curves would take seconds).
        write_page("<html></html>", {"k": [10]}, report)
    assert output_kind(report) == "evaluation-report" and output_kind(model) == "model"
    assert output_kind(results) == "results"
    assert json.loads(results.read_text())["results"]  # the result itself, with its kind
    assert hidden(tmp_path) == []
    # A file someone added to a tastemaker folder is theirs: not replaced without --force.
    (report / "my-notes.txt").write_text("mine")
    refused(capsys, *args, "--report", report, expect="its manifest does not list (my-notes.txt")


def test_json_replaces_only_a_file_tastemaker_wrote(ingested, tmp_path, capsys):
    """--json FILE: a file tastemaker wrote (its content says so) is replaced, another needs
    --force, a folder is never replaced by a file."""
    target = tmp_path / "results.json"
    target.write_text('{"mine": true}')
    args = ("evaluate", ingested, "--models", "popularity")
    refused(capsys, *args, "--json", target, expect="is a file tastemaker did not write")
    assert json.loads(target.read_text()) == {"mine": True}
    ok(capsys, *args, "--json", target, "--force")
    ok(capsys, *args, "--json", target)
    (tmp_path / "folder").mkdir()
    refused(capsys, *args, "--json", tmp_path / "folder", "--force", expect="is a folder")


def test_json_is_never_an_input_nor_inside_another_output(ingested, tmp_path, capsys):
    params = tmp_path / "best.json"
    params.write_text('{"model": "popularity", "params": {}}')
    args = ("evaluate", ingested, "--models", "popularity", "--params-file", params)
    refused(capsys, *args, "--json", params, "--force", expect="is the input")
    report = tmp_path / "report"
    refused(
        capsys, *args, "--report", report, "--json", report / "r.json", expect="one would replace"
    )
    assert json.loads(params.read_text())["model"] == "popularity"


def test_synth_and_tune_outputs_follow_the_same_rules(ingested, tmp_path, capsys):
    dump = tmp_path / "dump"
    synth = ("synth", "--users", "20", "--artists", "40", "--listens", "500")
    for _ in range(2):
        ok(capsys, *synth, "--out", dump)
    assert output_kind(dump) == "synth"
    refused(capsys, *synth, "--out", ingested, expect="not a 'synth'")
    mine = tmp_path / "best.json"
    mine.write_text("{}")
    refused(capsys, "tune", ingested, "--model", "als", "--out", mine, expect="did not write")
    refused(capsys, "tune", ingested, "--model", "als", "--out", dump, expect="is a folder")


def test_out_dot_is_refused(plays, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("mine")
    for out in (".", "..", str(tmp_path)):
        refused(capsys, "ingest", plays, "--out", out, "--force", expect="current directory")
    assert (tmp_path / "mine.txt").is_file()


def _make_read_only(folder: Path) -> bool:
    """Make ``folder`` unwritable for this process (chmod; as root, the immutable flag)."""
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return True
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def test_unwritable_destinations_give_one_line(plays, tmp_path, capsys):
    """A read-only folder, a path under a regular file, /proc: one line, exit 2."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(capsys, "ingest", plays, "--out", a_file / "sub" / "out", expect="is a file")
    refused(capsys, "ingest", plays, "--out", "/proc/tastemaker-out", expect="cannot write into")
    locked = tmp_path / "locked"
    locked.mkdir()
    if not _make_read_only(locked):
        pytest.skip("cannot make a folder read-only for this user here")
    try:
        line = refused(capsys, "ingest", plays, "--out", locked / "out", expect="cannot")
        assert "read-only" in line or "not permitted" in line
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


# -- 2. two writers on one output ------------------------------------------------------------------


def _child(code: str, *args: object, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the child did not get there"
        time.sleep(0.02)


HOLDER = """
    import sys, time
    from pathlib import Path
    from tastemaker.artifacts import claim_output
    out, ready, go = sys.argv[1:4]
    claim_output(out, "interactions", option="--out")
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.02)
"""


def test_a_second_writer_is_refused_while_the_first_holds_the_output(plays, tmp_path, capsys):
    out, ready, go = tmp_path / "data", tmp_path / "ready", tmp_path / "go"
    holder = _child(HOLDER, out, ready, go)
    try:
        _wait_for(ready, holder)
        refused(
            capsys,
            "ingest",
            plays,
            "--out",
            out,
            expect=f"another tastemaker process (pid {holder.pid}) is writing it",
        )
    finally:
        go.touch()
        assert holder.wait(30) == 0
    ok(capsys, "ingest", plays, "--out", out)  # the lock went with its holder
    assert hidden(tmp_path) == []


RACER = """
    import sys
    from pathlib import Path
    from tastemaker.artifacts import atomic_directory, write_manifest
    from tastemaker.errors import ArtifactError
    out, rounds = Path(sys.argv[1]), int(sys.argv[2])
    done = busy = 0
    for i in range(rounds):
        try:
            with atomic_directory(out, kind="race") as tmp:
                (tmp / "payload").write_bytes(b"x" * 4096)
                (tmp / "sub").mkdir()
                (tmp / "sub" / "more").write_text(str(i))
                write_manifest(tmp, "race", 1)
            done += 1
        except ArtifactError as exc:
            assert "is writing it" in str(exc), exc
            busy += 1
    print(done, busy)
"""


def test_concurrent_writers_never_crash_and_leave_one_whole_output(tmp_path):
    """Swaps that coincided died with ENOTEMPTY or FileNotFoundError 25-30 % of the time."""
    out = tmp_path / "out"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RACER), str(out), "40"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [racer.communicate(timeout=120) for racer in racers]
    for racer, (_, err) in zip(racers, outcomes, strict=True):
        assert racer.returncode == 0, err
    assert sum(int(stdout.split()[0]) for stdout, _ in outcomes) >= 1
    read_manifest(out, kind="race")  # whole, checksums and all
    assert hidden(tmp_path) == []


JSON_HOLDER = """
    import sys, time
    from pathlib import Path
    from tastemaker.artifacts import file_lock
    target, ready = sys.argv[1:3]
    with file_lock(target, doing="writing it"):
        Path(ready).touch()
        time.sleep(0.5)
"""


def test_a_second_json_writer_waits_for_the_first(tmp_path, capsys):
    target, ready = tmp_path / "best.json", tmp_path / "ready"
    holder = _child(JSON_HOLDER, target, ready)
    _wait_for(ready, holder)
    atomic_write_json(target, {"x": 1}, "results")
    assert holder.wait(30) == 0
    assert "is writing it; waiting" in capsys.readouterr().err
    assert output_kind(target) == "results" and hidden(tmp_path) == []


# -- 3. writers killed with SIGKILL ---------------------------------------------------------------

KILLED = """
    import sys, time
    from pathlib import Path
    from tastemaker import artifacts
    out, step, ready, kind = sys.argv[1:5]

    def pause(name):
        if name == step:
            Path(ready).touch()
            time.sleep(600)

    artifacts._checkpoint = pause
    if step == "file-written":
        artifacts.atomic_write_json(out, {"v": "new"}, kind)
    with artifacts.atomic_directory(out, kind=kind) as tmp:
        (tmp / "v").write_text("new")
        artifacts.write_manifest(tmp, kind, 1)
        pause("writing")
"""


def _version(out: Path, text: str) -> None:
    with atomic_directory(out, kind="x") as tmp:
        (tmp / "v").write_text(text)
        write_manifest(tmp, "x", 1)


def _kill_at(out: Path, step: str, tmp_path: Path, kind: str = "x") -> int:
    ready = tmp_path / f"ready-{step}"
    child = _child(KILLED, out, step, ready, kind)
    _wait_for(ready, child)
    child.send_signal(signal.SIGKILL)
    child.wait(30)  # reaped: a zombie would still look alive
    return child.pid


@pytest.mark.parametrize(
    ("step", "left", "then"),
    [
        ("writing", "tmp", "old"),  # killed while writing: the old output stands
        ("moved-aside", "tmp old", None),  # between the two renames: no output at all
        ("swapped", "old", "new"),  # after the swap: the old copy was not removed yet
    ],
)
def test_a_killed_writer_leaves_nothing_after_the_next_run(tmp_path, step, left, then):
    out = tmp_path / "out"
    _version(out, "old")
    pid = _kill_at(out, step, tmp_path)
    leftovers = [name for name in hidden(tmp_path) if name != ".out.lock"]  # lock: see below
    assert {name.split("-")[0] for name in leftovers} == {f".out.{w}" for w in left.split()}
    assert all(f"-{pid}" in name for name in leftovers)
    assert (out / "v").read_text() == then if then else not out.exists()
    # The next run on that output cleans up, and puts the old output back first if the
    # kill left none, even when that run itself fails.
    with pytest.raises(RuntimeError), atomic_directory(out, kind="x"):
        raise RuntimeError("the next run fails too")
    assert hidden(tmp_path) == []
    assert (out / "v").read_text() == (then or "old")
    read_manifest(out, kind="x")


def test_the_next_cli_run_restores_a_killed_swap(plays, tmp_path, capsys):
    out = tmp_path / "data"
    ok(capsys, "ingest", plays, "--out", out)
    before = snapshot(out)
    _kill_at(out, "moved-aside", tmp_path, kind="interactions")
    assert not out.exists()
    # Even a run that then fails (its source is missing) puts the old output back first.
    code, _, err = run_cli(capsys, "ingest", tmp_path / "missing.csv", "--out", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert "restored the previous output" in lines[0] and "missing.csv" in lines[1]
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_killed_json_write_is_cleaned_and_only_dead_writers_leftovers_go(tmp_path):
    target = tmp_path / "r.json"
    pid = _kill_at(target, "file-written", tmp_path)
    (leftover,) = [name for name in hidden(tmp_path) if name != ".r.json.lock"]
    assert leftover.startswith(f".r.json.tmp-{pid}-") and not target.exists()
    # A live process's leftovers are not touched (it may still be writing).
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".r.json.tmp-{alive.pid}-00ff"
        live.write_text("in flight")
        atomic_write_json(target, {"v": 2}, "x")
        assert hidden(tmp_path) == [live.name]
        assert json.loads(target.read_text())["v"] == 2
    finally:
        alive.kill()
        alive.wait()


# -- 5. tune runs sharing a study; modes from the umask -------------------------------------------

TUNE_SPACE = """
model = "als"
[params.factors]
type = "int"
low = 2
high = 16
[params.regularization]
type = "float"
low = 0.001
high = 1.0
log = true
"""

CLI = """
    import sys
    from tastemaker.cli import main
    sys.argv[0] = "tastemaker"
    main()
"""

# Run A of `tastemaker tune`, stopped twice: right after it created the study (holding the
# study's lock, before it recorded its configuration: where the second run used to read a
# study "made with another data, folds, metric...") and in its first trial.
GATED_TUNE = """
    import os, sys, time
    from pathlib import Path
    import optuna
    from tastemaker.tuning import search
    gates = Path(sys.argv[1])

    def gate(name):
        (gates / f"at-{name}").touch()
        while not (gates / f"go-{name}").exists():
            time.sleep(0.02)

    create, evaluate = optuna.create_study, search.evaluate_params

    def created(*args, **kwargs):
        study = create(*args, **kwargs)
        gate("created")
        return study

    def first_trial(*args, **kwargs):
        search.evaluate_params = evaluate
        gate("trial")
        return evaluate(*args, **kwargs)

    optuna.create_study, search.evaluate_params = created, first_trial
    os.umask(0o027)
    from tastemaker.cli import main
    sys.argv = ["tastemaker", "tune", *sys.argv[2:]]
    main()
"""


def test_two_tune_runs_on_a_fresh_study_share_it(ingested, tmp_path):
    """The second of two runs on a fresh study was refused with "made with another data,
    folds, metric..."; now it waits while the first creates the study, then both add
    trials to it. Run A, under umask 027, also checks that best.json takes the umask's mode
    (it was 0600 whatever the umask)."""
    import optuna

    space = tmp_path / "space.toml"
    space.write_text(TUNE_SPACE)
    db = tmp_path / "tune.db"
    common = [ingested, "--model", "als", "--space", space, "--search", "random"]
    common += ["--trials", "3", "--storage", f"sqlite:///{db}", "--study-name", "shared"]
    common += ["--threads", "1", "--repeats", "1"]
    gates = tmp_path / "gates"
    gates.mkdir()
    first_err = tmp_path / "first.err"
    first = _child(
        GATED_TUNE,
        gates,
        *common,
        "--out",
        tmp_path / "a.json",
        stderr=first_err.open("w"),
    )
    try:
        _wait_for(gates / "at-created", first)
        second_err = tmp_path / "second.err"
        with open(second_err, "w") as err:
            second = _child(CLI, "tune", *common, "--out", tmp_path / "b.json", stderr=err)
            deadline = time.monotonic() + 60
            while "opening the study; waiting" not in second_err.read_text():
                assert second.poll() is None, second_err.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            (gates / "go-created").touch()
            _wait_for(gates / "at-trial", first)  # A is in its first trial; B joins
            assert second.wait(120) == 0, second_err.read_text()
    finally:
        (gates / "go-created").touch()
        (gates / "go-trial").touch()
        first.wait(120)
    assert first.returncode == 0, first_err.read_text()
    assert "made with another" not in second_err.read_text() + first_err.read_text()
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4  # B's three, and A's one that was running when B filled the study
    assert sorted(t.user_attrs["run"] for t in done) == [1, 2, 2, 2]
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert json.loads((tmp_path / "b.json").read_text())["kind"] == "tuning-result"
    assert hidden(tmp_path) == []


@pytest.mark.parametrize(
    ("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)]
)
def test_outputs_take_their_modes_from_the_umask(tmp_path, umask, folder, file):
    """Output folders were created 0700 (mkdtemp), files 0600 (mkstemp)."""
    previous = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "new" / "out", kind="x") as tmp:
            (tmp / "v").write_text("x")
            write_manifest(tmp, "x", 1)
        atomic_write_json(tmp_path / "new" / "r.json", {}, "results")
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "new") == folder and mode(tmp_path / "new" / "out") == folder
    assert mode(tmp_path / "new" / "r.json") == file


def test_claims_unlock_and_remove_the_folders_they_made(tmp_path):
    """A command that fails before writing leaves neither its lock nor its new parents."""
    claim_output(tmp_path / "a" / "b" / "out", "x")
    with (
        pytest.raises(ArtifactError, match="is using it"),
        file_lock(tmp_path / "a" / "b" / "out", wait=0),
    ):
        pass
    release_outputs()
    assert list(tmp_path.iterdir()) == []
    assert artifacts._claims == {}
