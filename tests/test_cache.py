"""A damaged cache entry is reported, moved aside and retrained; `paraeval cache`."""

from __future__ import annotations

import shutil

import torch

from paraeval.core.cache import entries
from paraeval.run.lookup import victim_config
from paraeval.training.parasite_cache import load_or_train_parasite
from paraeval.training.parasites import ParasiteConfig
from paraeval.training.victims import load_or_train_victim

from .conftest import MODEL_CACHE, run_cli


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_truncated_victim_and_parasite_are_retrained(mnist, tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    config = victim_config("mlp")
    first, _ = load_or_train_victim(config, mnist)  # trains once into the empty cache
    parasite = ParasiteConfig(
        batch_norm=False, bias="small", side=8, n_train=200, n_heldout=50, epochs=1
    )
    trained = load_or_train_parasite(parasite)
    (victim_file,) = (tmp_path / "victims").glob("*.safetensors")
    (parasite_file,) = (tmp_path / "parasites").glob("*.safetensors")
    _truncate(victim_file)
    _truncate(parasite_file)
    capfd.readouterr()
    again, _ = load_or_train_victim(config, mnist)
    retrained = load_or_train_parasite(parasite)
    warned = capfd.readouterr().err
    assert warned.count("unreadable") == 2 and "retraining" in warned
    assert victim_file.with_suffix(".corrupt").exists() and victim_file.exists()
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed, one thread: the same victim again
    assert torch.equal(trained.noise, retrained.noise)
    assert load_or_train_parasite(parasite).fit == retrained.fit  # now read from the cache


def test_cache_command_lists_verifies_and_clears(tmp_path) -> None:
    (tmp_path / "victims").mkdir()
    for path in (MODEL_CACHE / "victims").glob("vm-*.safetensors"):
        shutil.copy2(path, tmp_path / "victims" / path.name)
    names = sorted(p.name for p in (tmp_path / "victims").iterdir())
    env = {"PARAEVAL_CACHE_DIR": str(tmp_path)}
    listed = run_cli("cache", "list", env=env)
    assert listed.returncode == 0 and all(name in listed.stdout for name in names)
    assert "name=vm" in listed.stdout
    _truncate(tmp_path / "victims" / names[0])
    checked = run_cli("cache", "verify", env=env)
    assert checked.returncode == 0 and f"moved damaged {names[0]}" in checked.stderr
    assert [e.path.name for e in entries(tmp_path)] == names[1:]
    (tmp_path / "models" / "0123").mkdir(parents=True)  # a model file a run shipped here
    (tmp_path / "models" / "0123" / "net.py").write_text("")
    cleared = run_cli("cache", "clear", env=env)
    assert cleared.returncode == 0 and list(entries(tmp_path)) == []
    assert not (tmp_path / "models").exists()


def test_the_cache_follows_xdg_cache_home(tmp_path, monkeypatch) -> None:
    from paraeval.core.cache import cache_dir

    monkeypatch.delenv("PARAEVAL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "paraeval"
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def _flip_tensor_bytes(path) -> None:
    """Flip bytes inside the tensor data (past safetensors' JSON header): the file still
    parses; only the recorded digest can tell."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for offset in range(start + 16, min(len(data), start + 16 + 400)):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bit_flipped_victim_and_parasite_are_retrained_not_used(
    mnist, tmp_path, monkeypatch, capfd
) -> None:
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    config = victim_config("mlp")
    first, _ = load_or_train_victim(config, mnist)
    parasite = ParasiteConfig(
        batch_norm=False, bias="small", side=8, n_train=200, n_heldout=50, epochs=1
    )
    trained = load_or_train_parasite(parasite)
    (victim_file,) = (tmp_path / "victims").glob("*.safetensors")
    (parasite_file,) = (tmp_path / "parasites").glob("*.safetensors")
    for path in (victim_file, parasite_file):
        _flip_tensor_bytes(path)
    checked = run_cli("cache", "verify", env={"PARAEVAL_CACHE_DIR": str(tmp_path)})
    assert checked.stderr.count("digest") == 2, checked.stderr
    for path in (victim_file, parasite_file):  # verify moved them aside; flip fresh copies
        path.with_suffix(".corrupt").replace(path)
    capfd.readouterr()
    again, _ = load_or_train_victim(config, mnist)
    retrained = load_or_train_parasite(parasite)
    warned = capfd.readouterr().err
    assert warned.count("DigestMismatch") == 2 and "retraining" in warned
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the retrained victim, not the flipped weights
    for a, b in zip(
        trained.model.state_dict().values(), retrained.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_the_digest_covers_a_bn_parasites_scalar_buffers() -> None:
    from paraeval.core.cache import tensor_digest
    from paraeval.models.parasite import ParasiticCNN

    state = ParasiticCNN(batch_norm=True, bias="small").state_dict()
    before = tensor_digest(state)  # a 0-d batch count among the tensors
    state["layers.1.num_batches_tracked"] += 1
    assert tensor_digest(state) != before


def test_a_victim_below_its_recorded_accuracy_is_flagged_in_its_cells(
    mnist, tmp_path, monkeypatch
) -> None:
    """A cached victim written before digests (none to check) whose weights changed since:
    every cell it measures says how far below the accuracy recorded at training it is."""
    import pandas as pd
    from safetensors.torch import load_file, save_file

    from paraeval.core.cache import DIGEST_KEY

    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    load_or_train_victim(victim_config("mlp"), mnist)
    (victim_file,) = (tmp_path / "victims").glob("*.safetensors")
    with victim_file.open("rb") as handle:  # the metadata, then the tensors, as written
        from safetensors import safe_open

        meta = dict(safe_open(handle.name, "pt").metadata())
    tensors = load_file(victim_file)
    first = next(name for name in tensors if name.endswith("weight"))
    generator = torch.Generator().manual_seed(0)
    tensors[first] += 0.2 * torch.randn(tensors[first].shape, generator=generator)
    meta.pop(DIGEST_KEY)
    save_file(tensors, victim_file, metadata=meta)
    done = run_cli(
        "run",
        "--victims",
        "mlp",
        "--attacks",
        "fgsm",
        "--n-images",
        "5",
        "--out",
        str(tmp_path / "out"),
        env={"PARAEVAL_CACHE_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = pd.read_csv(tmp_path / "out" / "results.csv").iloc[0]
    warnings = str(row["warnings"])
    assert "pp below the" in warnings and "recorded when its cached weights" in warnings, row
    assert row["victim_accuracy"] > 20  # damaged, not near chance: only the recorded figure tells
