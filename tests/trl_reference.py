"""TRL 1.16's own loss code, called on given tensors: its trainers compute their losses inside
methods that expect a model and a trainer, so these stand-ins supply just what those methods read
(a model that returns the given per-token log-probs, an accelerator that gathers nothing)."""

from collections import defaultdict
from types import SimpleNamespace

import torch


class Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


def trainer(**attributes) -> SimpleNamespace:
    """What TRL's loss methods read of `self`, besides the given attributes."""
    return SimpleNamespace(
        accelerator=Accelerator(),
        model=SimpleNamespace(training=True),
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        aux_loss_enabled=False,
        **attributes,
    )


def dpo_trainer_loss(
    per_token_logps: torch.Tensor,
    completion_mask: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    loss_type: str,
    beta: float,
    label_smoothing: float = 0.0,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    discopop_tau: float = 0.05,
) -> torch.Tensor:
    """`DPOTrainer._compute_loss` on a batch [chosen; rejected] whose model returns
    `per_token_logps` (2B, T - 1), 0 outside the completion, with pi_ref's log-probs precomputed."""
    from trl import DPOTrainer

    outputs = SimpleNamespace(
        log_probs=per_token_logps,
        entropy=torch.zeros_like(per_token_logps),
        mean_logits=torch.zeros_like(per_token_logps),
        is_top1=torch.zeros_like(per_token_logps, dtype=torch.bool),
    )
    inputs = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    self = trainer(
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=f_alpha_divergence_coef,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        args=SimpleNamespace(discopop_tau=discopop_tau),
    )
    return DPOTrainer._compute_loss(self, lambda **kwargs: outputs, inputs, return_outputs=False)


def cpo_trainer_losses(
    policy_chosen, policy_rejected, loss_type: str, beta: float, simpo_gamma: float = 0.5
) -> torch.Tensor:
    """`CPOTrainer.cpo_loss`: the per-pair preference term (the NLL term is added by its caller)."""
    from trl.experimental.cpo import CPOTrainer

    self = trainer(
        alpha=0.0, loss_type=loss_type, beta=beta, label_smoothing=0.0, simpo_gamma=simpo_gamma
    )
    return CPOTrainer.cpo_loss(self, policy_chosen, policy_rejected)[0]


def orpo_trainer_losses(mean_chosen, mean_rejected, beta: float) -> torch.Tensor:
    """`ORPOTrainer.odds_ratio_loss` on length-normalised log-probs: beta log sigmoid(log odds),
    which its caller subtracts from the NLL."""
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer.odds_ratio_loss(trainer(beta=beta), mean_chosen, mean_rejected)[0]


def kto_trainer_loss(
    per_token_logps: torch.Tensor,
    kl_per_token_logps: torch.Tensor,
    completion_mask: torch.Tensor,
    desirable: torch.Tensor,
    ref_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> torch.Tensor:
    """`KTOTrainer._compute_loss` on a batch whose model returns `per_token_logps` for the
    completions and `kl_per_token_logps` for the mismatched (KL) sequences, pi_ref's precomputed."""
    from trl import KTOTrainer

    kl_input_ids = torch.zeros_like(completion_mask)

    def model(input_ids, **kwargs):
        logps = kl_per_token_logps if input_ids is kl_input_ids else per_token_logps
        return SimpleNamespace(
            log_probs=logps, entropy=torch.zeros_like(logps), mean_logits=torch.zeros_like(logps)
        )

    inputs = {
        "input_ids": torch.ones_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "KL_input_ids": kl_input_ids,
        "KL_attention_mask": torch.ones_like(completion_mask),
        "KL_completion_mask": completion_mask,
        "label": desirable,
        "ref_logps": ref_logps,
        "ref_KL_logps": ref_kl_logps,
    }
    self = trainer(
        calculate_KL=True,
        precompute_ref_logps=True,
        loss_type="kto",
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    self._compute_kl_logps = lambda model_, batch: KTOTrainer._compute_kl_logps(self, model_, batch)
    return KTOTrainer._compute_loss(self, model, inputs, return_outputs=False)
