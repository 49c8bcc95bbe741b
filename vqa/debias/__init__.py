"""Debiasing methods: DEBIAS maps a `train.debias` name to its Method (one file each, registered by
the explicit imports below); `build_debiased` wraps a built model with the method's branch.

Adding a method (docs/debias.md): its file here (a Branch module and a Method line), the line in the
tuple below, configs/<dataset>/<model>_<method>.yaml, its arm in vqa/report/runs.py ARMS, and its
tests in tests/test_debias.py (which enumerate DEBIAS).
"""

from __future__ import annotations

from torch import nn

from vqa.debias.base import BASE_PREFIX, Debiased, Method, Settings
from vqa.debias.bias_product import BIAS_PRODUCT
from vqa.debias.gge import GGE
from vqa.debias.lmh import LMH
from vqa.debias.lpf import LPF
from vqa.debias.prior import dataset_prior
from vqa.debias.rubi import RUBI
from vqa.errors import UserError

DEBIAS: dict[str, Method] = {}
for _method in (BIAS_PRODUCT, LMH, RUBI, LPF, GGE):
    if _method.name in DEBIAS:
        raise ValueError(f"two debiasing methods are named {_method.name}")
    DEBIAS[_method.name] = _method


def get_method(name: str) -> Method:
    if name not in DEBIAS:
        raise UserError(f"config: unknown train.debias '{name}'; choose none or one of {', '.join(DEBIAS)}")
    return DEBIAS[name]


def check_loss(name: str, loss: str) -> None:
    """Refuse, at config load, a train.loss the method's paper does not define it for."""
    method = get_method(name)
    if loss not in method.losses:
        raise UserError(
            f"config: train.debias {name} ({method.paper}) is defined for train.loss "
            f"{' / '.join(method.losses)}, not {loss}; set train.loss to one of them"
        )


def build_debiased(
    name: str,
    model: nn.Module,
    train_dataset,
    num_answers: int,
    hidden_dim: int,
    loss: str,
    settings: Settings,
) -> Debiased:
    """`model` (its joint_dim and question_dim size the branch) with the branch of method `name`; the
    prior from `train_dataset` (the training split); `hidden_dim` sizes question-only classifiers."""
    method = get_method(name)
    check_loss(name, loss)
    prior = dataset_prior(train_dataset, num_answers)
    branch = method.branch(
        model.joint_dim, model.question_dim, num_answers, hidden_dim, prior, loss, settings
    )
    return Debiased(model, branch, num_answers)


def debias_settings(train) -> Settings:
    """The methods' hyper-parameters from a TrainConfig (train.debias_*)."""
    return Settings(train.debias_entropy, train.debias_gamma, train.debias_question_weight)


def base_weights(state: dict, debias: str) -> dict:
    """The base model's weights in a run's checkpoint state: all of it without a method, else the
    `model.` part of the Debiased wrapper (prediction uses the base model alone)."""
    if debias == "none":
        return state
    return {k[len(BASE_PREFIX) :]: v for k, v in state.items() if k.startswith(BASE_PREFIX)}


__all__ = [
    "DEBIAS",
    "Debiased",
    "Method",
    "Settings",
    "base_weights",
    "build_debiased",
    "check_loss",
    "debias_settings",
]
