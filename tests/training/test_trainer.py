"""The loop: it learns, and a state_dict round trip resumes bit for bit (CPU)."""

import torch

from _helpers import small_mixture
from mechrare.config import TrainConfig, MixtureConfig, from_dict
from mechrare.data import Mixture
from mechrare.models import LADDER, build_model, olmo2_config
from mechrare.training import Callback, Trainer, evaluate
from mechrare.checkpoints.train_state import load_state, save_state


def make_trainer(steps=40, callbacks=()):
    mixture = Mixture(from_dict(MixtureConfig, small_mixture(), "mixture"), 0)
    cfg = TrainConfig(steps=steps, batch_size=16, lr=3e-3)
    shape = LADDER["d16-l2"]
    model = build_model(olmo2_config(shape, len(mixture.vocab), 24, 0, 1), seed=0)
    return Trainer(model, mixture, cfg, torch.device("cpu"), [0, steps // 2, steps], callbacks)


class Recorder(Callback):
    def __init__(self):
        self.infos, self.losses = [], []

    def on_checkpoint(self, trainer, info):
        self.infos.append(dict(info))

    def on_step_end(self, trainer, loss):
        self.losses.append(float(loss))


def test_training_reduces_loss_and_checkpoints_on_schedule():
    rec = Recorder()
    trainer = make_trainer(60, [rec])
    before = evaluate(trainer.model, trainer.mixture, trainer.device)
    trainer.fit()
    after = evaluate(trainer.model, trainer.mixture, trainer.device)
    assert [i["step"] for i in rec.infos] == [0, 30, 60]
    assert rec.infos[0]["train_loss"] is None
    assert abs(rec.infos[1]["train_loss"] - sum(rec.losses[:30]) / 30) < 1e-5
    assert after["background_loss"] < before["background_loss"] - 0.5
    assert sum(rec.losses[-10:]) < sum(rec.losses[:10])


def test_resume_from_state_dict_is_bit_exact(tmp_path):
    straight = make_trainer(40)
    straight.fit()

    first = make_trainer(40)
    first.cfg.steps = 17  # stop early, as a killed run would
    first.fit()
    save_state(tmp_path, first.state_dict(), first.step)
    assert not (tmp_path / "state.pt").exists()  # safetensors + JSON: no pickle

    resumed = make_trainer(40)
    resumed.load_state_dict(load_state(tmp_path, "cpu"))
    assert resumed.step == 17
    resumed.fit()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_evaluate_matches_a_direct_computation():
    trainer = make_trainer()
    trainer.fit()
    metrics = evaluate(trainer.model, trainer.mixture, trainer.device, batch_size=7)
    es = trainer.mixture.eval_sets[0]
    ids = torch.as_tensor(es.input_ids)
    with torch.no_grad():
        logits = trainer.model(input_ids=ids).logits
    n = es.n_prompt
    pred = logits[:, n - 1 : -1].argmax(-1)
    target = ids[:, n:]
    acc = (pred == target).all(1).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits[:, n - 1 : -1].reshape(-1, logits.shape[-1]), target.reshape(-1))
    assert metrics["eval"][es.task]["accuracy"] == acc
    assert abs(metrics["eval"][es.task]["loss"] - loss.item()) < 1e-5
