"""Data-parallel training under ``torchrun``, on PyTorch's own engine: FSDP2 over every process.

``torchrun --nproc_per_node N -m mechrare train CONFIG --out RUN`` runs the same command in N
processes. Each builds the whole batch of update ``s`` (a pure function of the config, seed and
``s``) and trains on its own rows of it; the model's parameters, gradients and optimizer state are
sharded over the processes with ``torch.distributed.fsdp.fully_shard`` (one unit per decoder layer,
then the root). The loss of a process is its rows' summed token losses divided by the token count of
the whole batch, so the gradient FSDP averages is that of the one-process loss: the same config gives
the same run on 1 or N processes, within float tolerance.

Checkpoint folders keep the one-process contract: their weights are gathered whole with
``torch.distributed.checkpoint.state_dict`` and written once, by rank 0. The resume state is not
gathered: each process saves its own shards of the weights and optimizer moments
(``torch.distributed.checkpoint`` with its Hugging Face safetensors writer, see
:mod:`mechrare.checkpoints.sharded_state`), and rank 0 the rest. The optimizer state is keyed by
position as ``torch.optim`` does, so a state resumes on another number of processes (DCP reshards),
and a one-process state on N and an N-process state in one. Every process must see the run folder
(one machine, or a shared file system). Backend: NCCL on CUDA (one GPU per process,
``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

from mechrare.ranks import Dist


def shard(model, dist: Dist, device):
    """``model`` (an OLMo-2 causal LM on ``device``) sharded over the job with FSDP2: one unit per
    decoder layer, then the root (embeddings, final norm, head)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.world,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


# -- full (unsharded) states, in the one-process formats ---------------------------------
_FULL = dict(full_state_dict=True, cpu_offload=True)


def full_model_state(model) -> dict:
    """Every weight, whole, on the CPU of rank 0 (empty elsewhere); collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(**_FULL))


def _names(model, optimizer) -> list[str]:
    """The parameter names in the optimizer's own order (the positions ``optimizer.state_dict()`` uses)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def by_position(state: dict, names: list[str]) -> dict:
    """A name-keyed optimizer state (torch.distributed.checkpoint's) keyed by position instead."""
    index = {n: i for i, n in enumerate(names)}
    return {
        "state": {index[n]: v for n, v in state["state"].items()},
        "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]],
    }


def by_name(state: dict, names: list[str]) -> dict:
    """The inverse of :func:`by_position`."""
    return {
        "state": {names[int(i)]: v for i, v in state["state"].items()},
        "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]],
    }


def sharded_train_state(model, optimizer) -> tuple[dict, dict]:
    """(model state, optimizer state keyed by position) of this process: its shards of the weights and
    moments as DTensors (nothing is gathered); collective."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return model_sd, by_position(optim_sd, _names(model, optimizer))


def load_train_state(model, optimizer, model_sd: dict, optim_sd: dict) -> None:
    """Load a state into the sharded model and optimizer; collective. Either this job's shards (as
    :func:`sharded_train_state` gives, loaded from disk by DCP in any earlier layout) or whole tensors
    (as one process saved them), which every process passes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    from mechrare.checkpoints.sharded_state import is_shard

    whole = not any(is_shard(v) for v in model_sd.values())
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=by_name(optim_sd, _names(model, optimizer)),
                   options=StateDictOptions(full_state_dict=whole))
