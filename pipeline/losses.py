"""The objectives, as pure functions on tensors: one per equation, named after the papers' terms.

Notation: y_w the preferred (chosen) response, y_l the rejected one; log pi(y|x) is the sum of the
response's token log-probs with prompt tokens masked (pipeline.logprobs). Per-example losses are
returned unreduced; trainers take the mean.
"""

import torch
import torch.nn.functional as F


# --- DPO (Rafailov et al. 2023, eq. 7) ---------------------------------------------------------

def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float):
    """L_DPO = -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]).

    Returns (loss, implicit reward of y_w, implicit reward of y_l), the rewards being
    beta * (log pi - log ref), detached, for logging accuracies and margins.
    """
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_logratio - rejected_logratio))
    return loss, beta * chosen_logratio.detach(), beta * rejected_logratio.detach()


# --- Cringe (Adolphs et al. 2022) and Pairwise Cringe (Xu et al. 2023) --------------------------

def ce_loss(token_logps: torch.Tensor) -> torch.Tensor:
    """L_CE(x, y+) = -log P(y+ | x) = -sum_t log p(y+_t | x, y+_<t); masked tokens hold 0."""
    return -token_logps.sum(-1)


def cringe_token_loss(logits: torch.Tensor, negatives: torch.Tensor, mask: torch.Tensor, k: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """L_Cr(x, y-) = sum_t -log( exp(s*_t) / (exp(s*_t) + exp(s_t[y-_t])) ).

    At each position t of the negative response: mask out the negative token y-_t, take the top-k
    logits s_t^1..s_t^k, sample z ~ softmax(s_t^1..s_t^k) and set s*_t = s_t^z. The sampled index is
    a constant; gradients flow through both s*_t and s_t[y-_t], as in ParlAI's implementation.

    logits (B, T, V), negatives (B, T) token ids, mask (B, T) bool; returns (B,).
    """
    if k > logits.size(-1) - 1:
        raise ValueError(f"cringe.k = {k} exceeds the vocabulary size minus one ({logits.size(-1) - 1})")
    negative_logit = logits.gather(-1, negatives.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, negatives.unsqueeze(-1), float("-inf"))
    topk = others.topk(k, dim=-1).values                                 # (B, T, k)
    probs = topk.detach().softmax(-1).flatten(0, 1)
    z = torch.multinomial(probs, 1, generator=generator).view(topk.shape[:-1] + (1,))
    positive_logit = topk.gather(-1, z).squeeze(-1)                      # s*_t
    # -log(e^{s*} / (e^{s*} + e^{s-})) = softplus(s- - s*)
    per_token = F.softplus(negative_logit - positive_logit)
    return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)


def cringe_gate(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, b: float,
                tau: float) -> torch.Tensor:
    """g = sigmoid((b - M) / tau), M = log P(y_w|x) - log P(y_l|x); a weight, so no gradient.

    g -> 1 while the model does not yet prefer y_w by the margin b, g -> 0 once it does (M >> b).
    """
    margin = (policy_chosen - policy_rejected).detach()
    return torch.sigmoid((b - margin) / tau)


def pairwise_cringe_loss(gate: torch.Tensor, ce_chosen: torch.Tensor, cringe_rejected: torch.Tensor,
                         gate_ce: bool = True) -> torch.Tensor:
    """L_Pair = g * (L_CE(x, y_w) + L_Cr(x, y_l)) as the slides write it (gate_ce=True);
    with gate_ce=False only the Cringe term is gated: L_CE + g * L_Cr."""
    if gate_ce:
        return gate * (ce_chosen + cringe_rejected)
    return ce_chosen + gate * cringe_rejected


# --- PPO (Schulman et al. 2017) with the KL-penalised reward of Ziegler et al. 2019 -------------

def kl_penalised_rewards(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                         score: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """r_t = -kl_coef * (log pi(y_t) - log ref(y_t)), plus the classifier's score on the last
    response token. All (B, T) with mask (B, T) bool; score (B,)."""
    rewards = -kl_coef * (logps - ref_logps)
    rewards = torch.where(mask, rewards, torch.zeros_like(rewards))
    last = mask.long().cumsum(-1).argmax(-1)  # index of the last response token in each row
    return rewards.scatter_add(-1, last.unsqueeze(-1), score.unsqueeze(-1).to(rewards.dtype))


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response tokens (masked ones are skipped):
    delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lam A_{t+1}; returns (A, A + V)."""
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.size(1))):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = torch.where(m, adv, torch.zeros_like(adv))
        next_value = torch.where(m, values[:, t], next_value)
        next_adv = torch.where(m, adv, next_adv)
    return advantages, advantages + values


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; masked-out entries become 0."""
    mean = x[mask].mean()
    std = x[mask].std() if mask.sum() > 1 else torch.ones((), dtype=x.dtype)
    return torch.where(mask, (x - mean) / (std + eps), torch.zeros_like(x))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum().clamp(min=1)


def ppo_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip: float):
    """L^CLIP = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)], rho = pi / pi_old per token.
    Returns (loss, clip fraction)."""
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped < unclipped).float(), mask)
    return loss, clipfrac.detach()


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   mask: torch.Tensor, clip: float) -> torch.Tensor:
    """L^V = 1/2 E[max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2)]."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


class AdaptiveKLController:
    """Ziegler et al. 2019, eq. 2: beta <- beta * (1 + K_beta * e_t), with the proportional error
    e_t = clip(KL_t / KL_target - 1, -0.2, 0.2) and K_beta = n_samples / horizon."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, kl: float, n_samples: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, kl: float, n_samples: int) -> None:
        pass


# --- The DPO paper's other baselines, and variants robust to noisy labels ---------------------

def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, tau: float):
    """L_IPO = (h - 1/(2 tau))^2, h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)).

    IPO (Azar et al. 2023) regresses h onto a finite margin where DPO pushes it towards infinity, so
    a pair that is always won by the same side cannot drive the policy arbitrarily far from pi_ref.
    The log-probs are summed over the response, as in the paper's equation; TRL's loss_type="ipo"
    averages them per token instead, which divides h by the length and changes what tau means.

    Returns (loss, h), h detached, for logging.
    """
    if tau <= 0:
        raise ValueError(f"ipo tau = {tau} must be > 0")
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return (h - 1 / (2 * tau)) ** 2, h.detach()


def conservative_dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                          ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float,
                          label_smoothing: float):
    """L_cDPO = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h), h as in L_DPO.

    Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): DPO with each label
    trusted with probability 1 - eps. Its minimum lies at beta h = log((1 - eps) / eps), so a
    flipped pair pulls only so far; eps = 0 is DPO. This is TRL's loss_type="sigmoid" with
    label_smoothing, not TRL's "robust" loss (Chowdhury et al. 2024, which divides by 1 - 2 eps).

    Returns what dpo_loss returns.
    """
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"cDPO label_smoothing = {label_smoothing} must lie in [0, 0.5)")
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    logits = beta * (chosen_logratio - rejected_logratio)
    # logsigmoid, not log(sigmoid): stays finite where sigmoid underflows to 0
    loss = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return loss, beta * chosen_logratio.detach(), beta * rejected_logratio.detach()


def unlikelihood_loss(chosen_token_logps: torch.Tensor, rejected_token_logps: torch.Tensor,
                      rejected_mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_UL = -sum_t log p(y_w,t | x, y_w,<t) - alpha * sum_t log(1 - p(y_l,t | x, y_l,<t)).

    The DPO paper's Unlikelihood baseline: likelihood on y_w, token-level unlikelihood (Welleck et
    al. 2019) on y_l. Summed over the response tokens like ce_loss, so the first term is exactly
    L_CE(x, y_w) and the second is the paper's sum over t; a per-token mean would weigh the tokens
    of short responses more. p(y_l,t) is clamped to at most 1 - 1e-6: a token the model is certain
    of would give log 0 = -inf; there its term is capped at -log(1e-6) ~ 13.8 (and has no gradient).

    Token log-probs (B, T) as pipeline.logprobs.token_logprobs gives them (0 outside the response);
    rejected_mask (B, T) bool marks y_l's response tokens, as log(1 - exp(0)) is not 0.
    Returns (B,).
    """
    p = rejected_token_logps.exp().clamp(max=1 - 1e-6)
    log_not_p = torch.where(rejected_mask, torch.log1p(-p), torch.zeros_like(p))
    return -chosen_token_logps.sum(-1) - alpha * log_not_p.sum(-1)


def bradley_terry_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """L_R = -log sigmoid(r(x, y_w) - r(x, y_l)): the reward model's loss in the RLHF route."""
    return -F.logsigmoid(reward_chosen - reward_rejected)


def plackett_luce_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor,
                       beta: float) -> torch.Tensor:
    """L_PL = -sum_{k=1}^{K-1} [beta h_k - log sum_{j>=k} exp(beta h_j)],
    h_k = log pi(y_k) - log ref(y_k).

    DPO under the Plackett-Luce model of a full ranking (DPO paper, app. A.3): y_1 is picked from
    y_1..y_K, then y_2 from y_2..y_K, and so on. K = 2 is L_DPO. Inputs (B, K), each row a prompt's
    K responses ordered best first; returns (B,).
    """
    if policy_logps.size(-1) < 2:
        raise ValueError(f"plackett_luce_loss needs K >= 2 responses, got {policy_logps.size(-1)}")
    s = beta * (policy_logps - ref_logps)
    tail = s.flip(-1).logcumsumexp(-1).flip(-1)  # tail[k] = log sum_{j>=k} exp(s_j), all k at once
    # the k = K term, s_K - log exp(s_K), is 0: the last pick has one candidate
    return -(s - tail)[..., :-1].sum(-1)
