import os

from mflangevin.cli import main


def test_demo_runs_prints_and_saves_its_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    args = ["--samples", "60", "--particles", "32", "--steps", "200", "--report-every", "100"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [line for line in printed.splitlines() if line.startswith("step")]
    assert len(records) == 3
    objectives = [float(line.split("objective")[1].split()[0]) for line in records]
    assert objectives[-1] < objectives[0]
    assert "figure saved" in printed and os.path.getsize(out) > 0
