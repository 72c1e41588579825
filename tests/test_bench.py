"""`make bench` must keep running: its parts, in quick mode, end to end."""

from load_tests import bench


def test_the_quick_bench_runs_every_part(capsys):
    assert bench.main(["--quick", "--only", "interest,wire,replication,ledger"]) == 0
    out = capsys.readouterr().out
    assert "cKDTree/ours" in out and "yes" in out  # the pipelines agreed
    assert "bytes per avatar" in out and "Replicator.step" in out
