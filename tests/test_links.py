"""No write through a link: a symbolic link planted where gan-sweep writes (a checkpoint, a report's file
or folder) is replaced or refused, never written through, and what it points at is left as it was."""

from conftest import assert_one_line_error, cli, stores


def test_a_link_planted_at_a_checkpoint_is_replaced_not_written_through(tiny_config, mnist, tmp_path):
    from gan_core.loop import save_checkpoint
    from gan_core.trainer import Trainer

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "run.pt").symlink_to(victim)
    trainer = Trainer(tiny_config, mnist)
    save_checkpoint(trainer, 0, ckpt / "run.pt", [], "reference")
    assert victim.read_text() == "keep me"
    assert not (ckpt / "run.pt").is_symlink() and (ckpt / "run.pt").stat().st_size > 1000
    assert sorted(p.name for p in ckpt.iterdir()) == ["run.pt"]  # no temporary file left


def test_report_files_and_folders_planted_as_links_are_not_written_through(finished_study, tmp_path):
    storage, tracking = stores(finished_study)
    out = tmp_path / "out"
    (out / "scale-quick").mkdir(parents=True)
    victim = tmp_path / "victim.csv"
    victim.write_text("keep me")
    (out / "scale-quick" / "trials.csv").symlink_to(victim)
    res = cli("report", "scale-quick", "--storage", storage, "--tracking-uri", tracking,
              "--out", out)
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "keep me" and not (out / "scale-quick" / "trials.csv").is_symlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "scale-quick" / "figures").rename(tmp_path / "old-figures")
    (out / "scale-quick" / "figures").symlink_to(outside)
    res = cli("report", "scale-quick", "--storage", storage, "--tracking-uri", tracking,
              "--out", out)
    assert_one_line_error(res.stderr, res.exit_code, "is a symbolic link")
    assert not list(outside.iterdir())
