"""A torchrun job for test_sharded_state.py (gloo, CPU): ``save FOLDER`` trains a small FSDP2 model
three steps and saves its training state sharded, with a gathered reference beside it; ``load FOLDER``
loads that state into a fresh model of this job's layout and checks it against the reference;
``crash FOLDER`` fills the disk under one process's shards, then cuts a save short before its
state.json, and checks the saved state stays whole each time;
``damaged FOLDER`` checks a damaged shard is refused by every process."""

import gc
import sys
from pathlib import Path

import torch
import torch.distributed as td
from safetensors.torch import load_file, save_file

from mechrare.checkpoints.sharded_state import is_shard
from mechrare.checkpoints.train_state import load_state, save_state
from mechrare.errors import RunFolderError
from mechrare.ranks import from_env
from mechrare.training.distributed import load_train_state, sharded_train_state


def sharded_model(seed: int, world: int):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))  # 7 and 1 rows split unevenly
    mesh = init_device_mesh("cpu", (world,))
    fully_shard(model[0], mesh=mesh)
    fully_shard(model[2], mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)


def state_of(model, opt, step: int) -> dict:
    model_sd, optim_sd = sharded_train_state(model, opt)
    return {"step": step, "model": model_sd, "optimizer": optim_sd, "rng": torch.get_rng_state(), "loss_sum": None,
            "pair": (1.5, float("inf"))}


def whole(state: dict) -> dict:
    """Every tensor of a state's model and optimizer, gathered whole (collective)."""
    full = lambda v: v.full_tensor() if is_shard(v) else v  # noqa: E731
    out = {f"model/{k}": full(v) for k, v in state["model"].items()}
    out.update({f"opt/{i}/{n}": full(v) for i, s in state["optimizer"]["state"].items() for n, v in s.items()})
    return out


def count_shard_hashes() -> list:
    """The shard files this process hashes from now on (train_state's sha256_file, counted)."""
    import mechrare.checkpoints.train_state as train_state

    seen, real = [], train_state.sha256_file

    def counted(path, *args, **kwargs):
        if Path(path).parent.name.endswith(".shards"):
            seen.append(Path(path).name)
        return real(path, *args, **kwargs)

    train_state.sha256_file = counted
    return seen


def run(mode: str, folder: Path) -> None:
    job = from_env()
    if mode == "save":
        model, opt = sharded_model(0, job.world)
        for i in range(3):
            model(torch.linspace(-1, 1, 20).reshape(4, 5) * (i + 1)).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
        state = state_of(model, opt, 3)
        save_state(folder / "resume", state, 3, job)
        reference = whole(state)
        if job.main:
            save_file({k: v.contiguous() for k, v in reference.items()}, str(folder / "reference.safetensors"))
    elif mode == "crash":  # a save cut short after the shards, before state.json: the saved state stays whole
        import mechrare.checkpoints.train_state as train_state

        import errno

        import safetensors.torch

        model, opt = sharded_model(0, job.world)
        resume = folder / "resume"
        real_save = safetensors.torch.save
        if job.rank == 1:  # the disk fills up under rank 1's shard file
            safetensors.torch.save = lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
        try:
            save_state(resume, state_of(model, opt, 4), 4, job)
            raise AssertionError("a save onto a full disk went through")
        except OSError as exc:  # on every process, as the OSError the CLI turns into its one line
            assert exc.errno == errno.ENOSPC, exc
        safetensors.torch.save = real_save
        job.barrier()
        real = train_state.atomic_write_text

        def full_disk(*args, **kwargs):
            raise OSError("no space left on device (planted)")

        train_state.atomic_write_text = full_disk
        try:
            save_state(resume, state_of(model, opt, 5), 5, job)
            crashed = False
        except OSError:
            crashed = True
        train_state.atomic_write_text = real
        assert crashed == job.main  # rank 0 alone writes state.json
        job.barrier()
        assert len(list(resume.glob("state-*.shards"))) == 3  # the shards of both cut-short saves are there, unnamed
        assert load_state(resume, "cpu", like=lambda: state_of(model, opt, 0))["step"] == 3  # still the last whole state
        save_state(resume, state_of(model, opt, 7), 7, job)
        job.barrier()
        assert [p.name.split("-")[1] for p in resume.glob("state-*.shards")] == ["7"]  # the next save removes the rest
        assert load_state(resume, "cpu", like=lambda: state_of(model, opt, 0))["step"] == 7
        print(f"rank {job.rank}: the cut-short save left the state whole")
    elif mode == "damaged":  # a damaged shard is refused by every process alike, each having hashed its share only
        model, opt = sharded_model(1, job.world)
        hashed = count_shard_hashes()
        try:
            load_state(folder / "resume", "cpu", like=lambda: state_of(model, opt, 0), dist=job)
            raise AssertionError("a damaged shard was loaded")
        except RunFolderError as exc:
            (folder / f"refused-{job.rank}.txt").write_text(str(exc))  # the ranks' stdout lines interleave
        assert len(hashed) == len(range(job.rank, 2, job.world)), hashed
    else:
        model, opt = sharded_model(1, job.world)  # other weights than the saved ones
        hashed = count_shard_hashes()
        state = load_state(folder / "resume", "cpu", like=lambda: state_of(model, opt, 0), dist=job)
        assert len(hashed) == len(range(job.rank, 2, job.world)), hashed  # 2 shard files shared out
        assert all(is_shard(v) for v in state["model"].values())  # each process read its own shards
        assert state["step"] == 3 and state["pair"] == (1.5, float("inf")) and state["loss_sum"] is None
        load_train_state(model, opt, state["model"], state["optimizer"])
        reference = load_file(str(folder / "reference.safetensors"))
        got = whole(state_of(model, opt, 0))
        assert sorted(got) == sorted(reference), (sorted(got), sorted(reference))
        for k, v in reference.items():
            assert torch.equal(got[k], v), k
        print(f"rank {job.rank} of {job.world}: the state loaded equal")


if __name__ == "__main__":
    td.init_process_group("gloo")
    run(sys.argv[1], Path(sys.argv[2]))
    # the sharded model and optimizer are freed (with run's frame) before the group goes: gloo aborted
    # the process now and then at exit (2 of 8 runs of 3 processes) when they outlived it
    gc.collect()
    td.barrier()
    td.destroy_process_group()
