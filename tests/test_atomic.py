import pytest
import torch

from thesislib.atomic import atomic_save, atomic_write, atomic_write_text


def test_writes_replace_whole_files(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    atomic_save({"w": torch.ones(2)}, tmp_path / "m.pt")
    assert torch.equal(torch.load(tmp_path / "m.pt", weights_only=True)["w"], torch.ones(2))


def test_an_interrupted_write_leaves_the_old_file_and_no_debris(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "complete")

    def half(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, half)
    assert p.read_text() == "complete"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]
