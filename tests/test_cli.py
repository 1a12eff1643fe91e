import os

import pytest

from mflangevin import cli
from mflangevin.cli import main


def test_demo_runs_prints_and_saves_its_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    args = ["--samples", "30", "--particles", "8", "--steps", "40", "--report-every", "20"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [line for line in printed.splitlines() if line.startswith("step")]
    assert len(records) == 3
    objectives = [float(line.split("objective")[1].split()[0]) for line in records]
    assert objectives[-1] < objectives[0]
    assert "figure saved" in printed and os.path.getsize(out) > 0


SMALL = ["--samples", "30", "--particles", "8", "--steps", "20", "--report-every", "20"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--steps", "0"),
        ("--particles", "2.5"),
        ("--samples", "many"),
        ("--step-size", "nan"),
        ("--step-size", "-0.1"),
        ("--temperature", "inf"),
        ("--l2", "nan"),
        ("--l2", "-1"),
        ("--report-every", "0"),
        ("--seed", str(2**63)),
        ("--seed", "1.5"),
    ],
)
def test_bad_values_are_usage_errors(option, value, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*SMALL, option, value])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert f"argument {option}" in captured.err and "usage:" in captured.err
    assert "step " not in captured.out  # nothing ran


def test_bad_out_is_refused_before_the_run(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for out in [tmp_path / "figure.txt", tmp_path / "figure", blocker / "demo.png"]:
        with pytest.raises(SystemExit) as exit:
            main([*SMALL, "--out", str(out)])
        assert exit.value.code == 2
        captured = capsys.readouterr()
        assert "argument --out" in captured.err and "step " not in captured.out


def test_directory_out_writes_inside_it(tmp_path, capsys):
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert main([*SMALL, "--out", str(folder)]) == 0
    expected = folder / "teacher_student.png"
    assert os.path.getsize(expected) > 0
    assert capsys.readouterr().out.rstrip().endswith(f"figure saved to {expected}")
    assert not (tmp_path / "outdir.png").exists()


def test_divergence_ends_with_one_clear_line(tmp_path, capsys):
    assert main([*SMALL, "--step-size", "500", "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mflangevin: MFLD diverged")
    assert "lower the step size" in err[0] and not (tmp_path / "x.png").exists()


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ["(default: 1000)", "(default: 0.5)", "(default: figures/teacher_student.png)"]:
        assert default in text


def test_a_save_cut_short_keeps_the_previous_figure(tmp_path, monkeypatch):
    """A run killed while saving (here: interrupted after the first bytes) leaves the previous
    figure whole and no partial file (before, the figure was written in place: 0 bytes)."""
    import matplotlib.figure

    out = tmp_path / "demo.png"
    out.write_bytes(b"previous figure")

    def interrupted(self, fname, **kwargs):
        with open(fname, "wb") if isinstance(fname, str | os.PathLike) else fname as handle:
            handle.write(b"\x89PNG")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    history = {"step": [0, 1], "objective": [1.0, 0.5], "test_error": [1.0, 0.6]}
    with pytest.raises(KeyboardInterrupt):
        cli._plot({**history, "similarity": [0.1, 0.2]}, str(out))
    assert out.read_bytes() == b"previous figure"
    assert os.listdir(tmp_path) == ["demo.png"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_unwritable_folder_is_refused_before_the_run(capsys):
    # os.access says yes to root in /proc; nothing can be created there.
    with pytest.raises(SystemExit) as exit:
        main([*SMALL, "--out", "/proc/mflangevin/demo.png"])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert "argument --out: cannot write to '/proc'" in captured.err
    assert "step " not in captured.out
