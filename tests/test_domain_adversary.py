"""Domain-adversarial training: gradient reversal, the classifier's loss, the manifest's
``domain`` field through the data layer, and a run that records its domains."""

import json

import pytest
import torch
import torch.nn.functional as F
from bad_media import last_json
from test_models import make_batch
from test_prep_avdigits import REPO, run, tiny  # noqa: F401 (tiny is a fixture)

from avssl.config import load_config
from avssl.data.manifest import Row, read_manifest, row_from_json
from avssl.data.source import domain_names, load_split, resolve_domains
from avssl.errors import ConfigError
from avssl.models import build_model
from avssl.models.adversary import DomainAdversary, reverse_gradient
from avssl.models.stats import stats_floats
from avssl.train.checkpoint import load_checkpoint


def test_reverse_gradient_is_identity_forward_and_scaled_negation_backward():
    x = torch.randn(5, 3, requires_grad=True)
    up = torch.randn(5, 3)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.backward(up)
    torch.testing.assert_close(x.grad, -0.25 * up)


def test_adversary_loss_is_cross_entropy_over_known_rows_and_reverses_into_the_embedding():
    torch.manual_seed(0)
    adv = DomainAdversary(6, 3, weight=2.0, hidden=8)
    emb = torch.randn(7, 6, requires_grad=True)
    domain = torch.tensor([0, 2, -1, 1, 1, -1, 0])
    loss, stats = adv(emb, domain)
    known = domain >= 0
    logits = adv.net(emb.detach())
    reference = F.cross_entropy(logits[known], domain[known])
    torch.testing.assert_close(loss, reference)
    assert stats["domain_loss"] == pytest.approx(float(reference.detach()))
    acc = (logits[known].argmax(1) == domain[known]).float().mean()
    assert stats["domain_acc"] == pytest.approx(float(acc))
    loss.backward()
    # the embedding's gradient is the plain one reversed and doubled; rows of unknown domain get
    # none; the classifier's own gradient is not reversed
    plain = emb.detach().clone().requires_grad_(True)
    F.cross_entropy(adv.net(plain)[known], domain[known]).backward()
    torch.testing.assert_close(emb.grad, -2.0 * plain.grad)
    assert emb.grad[~known].abs().max() == 0
    w = adv.net[2].weight
    before = float(reference.detach())
    with torch.no_grad():
        w -= 0.5 * w.grad
    assert F.cross_entropy(adv.net(emb.detach())[known], domain[known]) < before


def test_adversary_without_known_domains_adds_nothing():
    adv = DomainAdversary(4, 2, weight=1.0)
    emb = torch.randn(3, 4, requires_grad=True)
    loss, stats = adv(emb, torch.full((3,), -1))
    loss.backward()
    assert float(loss.detach()) == 0 and stats == {} and emb.grad.abs().max() == 0


def test_manifest_domain_round_trip():
    row = row_from_json({"id": "a", "image": "a.png", "domain": 7}, "m.jsonl:1")
    assert row.domain == "7" and row.to_json()["domain"] == "7"
    assert "domain" not in Row(id="b", image="b.png").to_json()
    rows = [
        Row(id="1", image="x", split="train", domain="jo"),
        Row(id="2", image="x", split="train", domain="al"),
        Row(id="3", image="x", split="val", domain="zed"),
        Row(id="4", image="x", split="train"),
    ]
    assert domain_names(rows) == ["al", "jo"] and domain_names(rows, "val") == ["zed"]


def contrastive_cfg(*sets):
    return load_config(REPO / "configs/contrastive.yaml", list(sets))


def test_model_refuses_bad_adversary_settings():
    cfg = contrastive_cfg("loss.domain_adversary=1.0", "loss.domains=[a]")
    with pytest.raises(ConfigError, match="at least two domains"):
        build_model(cfg.model, cfg.data, cfg.loss)
    sets = ["loss.domain_adversary=1", "loss.domains=[a,b]"]
    cfg = load_config(REPO / "configs/avenet.yaml", sets)
    with pytest.raises(ConfigError, match="contrastive only"):
        build_model(cfg.model, cfg.data, cfg.loss)
    cfg = contrastive_cfg("loss.domain_adversary=-1")
    with pytest.raises(ConfigError, match=">= 0"):
        build_model(cfg.model, cfg.data, cfg.loss)


@pytest.mark.parametrize("views", [1, 2])
def test_contrastive_loss_adds_the_adversary_on_every_view(views):
    cfg = contrastive_cfg(
        "loss.domain_adversary=0.5", "loss.domains=[a,b,c]", f"model.audio_views={views}"
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.loss).train()
    batch = make_batch(cfg, 6)
    torch.manual_seed(1)  # the same augmentation draws for both calls
    plain, plain_stats = model.loss(batch)
    torch.manual_seed(1)
    both, stats = model.loss({**batch, "domain": torch.tensor([0, 1, 2, 0, -1, 1])})
    plain_stats, stats = stats_floats(plain_stats), stats_floats(stats)  # as the loop logs them
    assert "domain_acc" not in plain_stats and 0 <= stats["domain_acc"] <= 1
    assert stats["loss"] == pytest.approx(plain_stats["loss"], rel=1e-5)
    assert float((both - plain).detach()) == pytest.approx(stats["domain_loss"], rel=1e-4, abs=1e-5)


def test_prepared_speakers_become_domains_of_training_items(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert run(tiny, out, "--test-speakers", "cat") == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert all(r.domain == r.id.split("_")[1] for r in rows)
    sets = [f"data.root={out}", "data.fps=1", "data.frame_size=56", "data.load_size=56"]
    sets += ["data.sample_rate=8000", "data.hard_fraction=0", "data.augment=false"]
    cfg = load_config(None, [*sets, "loss.domain_adversary=1"])
    resolve_domains(cfg, progress=False)
    assert cfg.loss.domains == ["amy", "bob"]  # cat is the test voice
    ds = load_split(cfg.data, "train", True, progress=False, domains=cfg.loss.domains)
    speakers = [ds.store.rows[ds.sampler.sample(i).clip].id.split("_")[1] for i in range(len(ds))]
    assert [int(ds[i]["domain"]) for i in range(len(ds))] == [
        ["amy", "bob"].index(s) for s in speakers
    ]
    cfg = load_config(None, [*sets, "loss.domain_adversary=1", "loss.domains=[bob,zed]"])
    resolve_domains(cfg, progress=False)  # named domains are kept as given
    assert cfg.loss.domains == ["bob", "zed"]
    ds = load_split(cfg.data, "train", True, progress=False, domains=cfg.loss.domains)
    assert {int(ds[i]["domain"]) for i in range(len(ds))} == {-1, 0}  # amy is not listed
    assert "domain" not in load_split(cfg.data, "train", True, progress=False)[0]


def test_resolve_refuses_too_few_domains_and_streaming(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert run(tiny, out, "--test-speakers", "cat", "--val-speaker", "bob") == 0
    cfg = load_config(None, [f"data.root={out}", "loss.domain_adversary=1"])
    with pytest.raises(ConfigError, match=r"manifest.jsonl: .*found 1"):
        resolve_domains(cfg, progress=False)
    sets = [f"data.root={out}", "loss.domain_adversary=1", "data.stream=true", "data.cache=c"]
    cfg = load_config(None, sets)  # a stream needs a cache: the adversary is refused first
    with pytest.raises(ConfigError, match="data.stream"):
        resolve_domains(cfg, progress=False)


@pytest.mark.slow
def test_training_records_domains_and_the_adversary(tiny, tmp_path, tiny_train_args, capsys):  # noqa: F811
    """``train.py`` fills ``loss.domains`` from the training split, logs the classifier's stats,
    and a checkpoint rebuilds with its head; the CLI refuses a manifest without domains."""
    import train

    out = tmp_path / "avd"
    assert run(tiny, out, "--test-speakers", "cat", "--canvases-per-recording", "2") == 0
    capsys.readouterr()
    sets = [f"data.root={out}", "model.channels=[8,16]", "model.embed_dim=16",
            "train.batch_size=8", "train.steps=2", "train.eval_every=2", "train.log_every=1",
            "loss.domain_adversary=1.0", "name=adv"]  # fmt: skip
    targs = ["--config", str(REPO / "configs/avdigits-contrastive.yaml"), *tiny_train_args()]
    targs += [a for s in sets for a in ("--set", s)]
    assert train.main(targs) == 0
    res = last_json(capsys.readouterr().out)
    run_dir = tmp_path / "runs" / "adv"
    assert res["run_dir"] == str(run_dir)
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in logged if "domain_acc" in x]
    assert len(steps) == 2 and all(x["domain_loss"] > 0 for x in steps)
    state = load_checkpoint(run_dir / "last.pt")
    assert state["config"]["loss"]["domains"] == ["amy", "bob"]
    assert any(k.startswith("domain_adversary.") for k in state["model"])
    from avssl.train.checkpoint import load_model

    model, cfg, _ = load_model(run_dir / "best.pt", torch.device("cpu"))
    assert model.domain_adversary is not None and cfg.loss.domains == ["amy", "bob"]
    synthetic = ["--config", str(REPO / "configs/contrastive.yaml"), *tiny_train_args()]
    capsys.readouterr()
    assert train.main([*synthetic, "--set", "loss.domain_adversary=1", "--set", "name=adv2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "synthetic world has no 'domain' fields" in err
    assert not (tmp_path / "runs" / "adv2").exists()
