"""The objectives, as pure functions on tensors: one per equation, named after the papers' terms.

Notation: y_w the preferred (chosen) response, y_l the rejected one; log pi(y|x) is the sum of the
response's token log-probs with prompt tokens masked (pipeline.logprobs). Per-example losses are
returned unreduced; trainers take the mean. The pairwise losses' argument names are what the
pairwise trainer feeds them by (pipeline.steps.loss_step): policy_chosen, policy_rejected,
ref_chosen, ref_rejected (summed log-probs), chosen_length, rejected_length (response tokens),
chosen_token_logps, rejected_token_logps, chosen_mask, rejected_mask (per token), and the method's
settings. Beside PPO's losses lie the quantities they are built from: the KL-penalised per-token
reward, GAE's advantages and returns, whitening.
"""

import math

import torch
import torch.nn.functional as F

# --- DPO (Rafailov et al. 2023, eq. 7) ---------------------------------------------------------


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_DPO = -log sigmoid(beta [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])."""
    return -F.logsigmoid(beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)))


# --- Cringe (Adolphs et al. 2022) and Pairwise Cringe (Xu et al. 2023) --------------------------


def ce_loss(token_logps: torch.Tensor) -> torch.Tensor:
    """L_CE(x, y+) = -log P(y+ | x) = -sum_t log p(y+_t | x, y+_<t); masked tokens hold 0."""
    return -token_logps.sum(-1)


def cringe_token_loss(
    logits: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_Cr(x, y-) = sum_t -log( exp(s*_t) / (exp(s*_t) + exp(s_t[y-_t])) ).

    At each position t of the negative response: mask out the negative token y-_t, take the top-k
    logits s_t^1..s_t^k, sample z ~ softmax(s_t^1..s_t^k) and set s*_t = s_t^z. The sampled index is
    a constant; gradients flow through both s*_t and s_t[y-_t], as in ParlAI's implementation.

    logits (B, T, V), negatives (B, T) token ids, mask (B, T) bool; returns (B,).
    """
    if k > logits.size(-1) - 1:
        raise ValueError(
            f"cringe.k = {k} exceeds the vocabulary size minus one ({logits.size(-1) - 1})"
        )
    negative_logit = logits.gather(-1, negatives.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, negatives.unsqueeze(-1), float("-inf"))
    topk = others.topk(k, dim=-1).values  # (B, T, k)
    probs = topk.detach().softmax(-1).flatten(0, 1)
    z = torch.multinomial(probs, 1, generator=generator).view(topk.shape[:-1] + (1,))
    positive_logit = topk.gather(-1, z).squeeze(-1)  # s*_t
    # -log(e^{s*} / (e^{s*} + e^{s-})) = softplus(s- - s*)
    per_token = F.softplus(negative_logit - positive_logit)
    return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)


def cringe_gate(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, b: float, tau: float
) -> torch.Tensor:
    """g = sigmoid((b - M) / tau), M = log P(y_w|x) - log P(y_l|x); a weight, so no gradient.

    g -> 1 while the model does not yet prefer y_w by the margin b, g -> 0 once it does (M >> b).
    """
    margin = (policy_chosen - policy_rejected).detach()
    return torch.sigmoid((b - margin) / tau)


def pairwise_cringe_loss(
    gate: torch.Tensor, ce_chosen: torch.Tensor, cringe_rejected: torch.Tensor, gate_ce: bool = True
) -> torch.Tensor:
    """L_Pair = g * (L_CE(x, y_w) + L_Cr(x, y_l)) as the slides write it (gate_ce=True);
    with gate_ce=False only the Cringe term is gated: L_CE + g * L_Cr."""
    if gate_ce:
        return gate * (ce_chosen + cringe_rejected)
    return ce_chosen + gate * cringe_rejected


# --- PPO (Schulman et al. 2017) with the KL-penalised reward of Ziegler et al. 2019 -------------


def kl_penalised_rewards(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    score: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """r_t = -kl_coef * (log pi(y_t) - log ref(y_t)), plus the classifier's score on the last
    response token. All (B, T) with mask (B, T) bool; score (B,)."""
    rewards = -kl_coef * (logps - ref_logps)
    rewards = torch.where(mask, rewards, torch.zeros_like(rewards))
    last = mask.long().cumsum(-1).argmax(-1)  # index of the last response token in each row
    return rewards.scatter_add(-1, last.unsqueeze(-1), score.unsqueeze(-1).to(rewards.dtype))


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
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


def ppo_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
):
    """L^CLIP = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)], rho = pi / pi_old per token.
    Returns (loss, clip fraction)."""
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped < unclipped).float(), mask)
    return loss, clipfrac.detach()


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """L^V = 1/2 E[max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2)]."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


# --- The DPO paper's other baselines, and variants robust to noisy labels ---------------------


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """L_IPO = (h - 1/(2 tau))^2, h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)).

    IPO (Azar et al. 2023) regresses h onto a finite margin where DPO pushes it towards infinity, so
    a pair that is always won by the same side cannot drive the policy arbitrarily far from pi_ref.
    The log-probs are summed over the response, as in the paper's equation; TRL's loss_type="ipo"
    averages them per token instead (ipo_mean_loss), which divides h by the length and changes
    what tau means.
    """
    if tau <= 0:
        raise ValueError(f"ipo tau = {tau} must be > 0")
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return (h - 1 / (2 * tau)) ** 2


def conservative_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float,
) -> torch.Tensor:
    """L_cDPO = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h), h as in L_DPO.

    Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): DPO with each label
    trusted with probability 1 - eps. Its minimum lies at beta h = log((1 - eps) / eps), so a
    flipped pair pulls only so far; eps = 0 is DPO. This is TRL's loss_type="sigmoid" with
    label_smoothing, not TRL's "robust" loss (robust_dpo_loss, which divides by 1 - 2 eps).
    """
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"cDPO label_smoothing = {label_smoothing} must lie in [0, 0.5)")
    logits = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    # logsigmoid, not log(sigmoid): stays finite where sigmoid underflows to 0
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def unlikelihood_loss(
    chosen_token_logps: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    rejected_mask: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
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


def plackett_luce_loss(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float
) -> torch.Tensor:
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


def preferred_ft_loss(chosen_token_logps: torch.Tensor) -> torch.Tensor:
    """L_SFT(y_w) = -log pi(y_w | x): Preferred-FT, supervised fine-tuning on the chosen responses
    (the DPO paper's baseline; TRL's loss_type="sft" takes the mean over the batch's tokens
    instead of the sum over each response)."""
    return ce_loss(chosen_token_logps)


# --- TRL's DPOTrainer loss family (TRL 1.16, `DPOConfig.loss_type`) ----------------------------
# s_w = log pi(y_w) - log ref(y_w), s_l likewise, D = s_w - s_l: sums over the response tokens.


def _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected):
    return policy_chosen - ref_chosen, policy_rejected - ref_rejected


def slic_hinge_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_SLiC = max(0, 1 - beta D): the hinge of SLiC-HF (Zhao et al. 2023), TRL's "hinge"; it
    stops pushing a pair once its margin reaches 1 / beta."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return torch.relu(1 - beta * (s_w - s_l))


def ipo_mean_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """L = (s_w / |y_w| - s_l / |y_l| - 1/(2 tau))^2: IPO on per-token mean log-ratios, TRL's "ipo"
    (the form the IPO authors confirmed to TRL; ipo_loss is the paper's summed form)."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    h = s_w / chosen_length.clamp(min=1) - s_l / rejected_length.clamp(min=1)
    return (h - 1 / (2 * tau)) ** 2


def exo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    epsilon: float,
) -> torch.Tensor:
    """L_EXO = q_w (log q_w - log(1 - eps)) + q_l (log q_l - log eps), q_w = sigmoid(beta D),
    q_l = sigmoid(-beta D): KL(q || p_eps) between the policy's implied preference over the pair and
    the label smoothed by eps (EXO, Ji et al. 2024, eq. 16; TRL's "exo_pair")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    z = beta * (s_w - s_l)
    return torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-epsilon)) + torch.sigmoid(-z) * (
        F.logsigmoid(-z) - math.log(epsilon)
    )


def nca_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_NCA = -log sigmoid(beta s_w) - 1/2 log sigmoid(-beta s_w) - 1/2 log sigmoid(-beta s_l):
    noise-contrastive alignment (Chen et al. 2024), which pulls y_w's own likelihood up rather
    than only the margin (TRL's "nca_pair")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return (
        -F.logsigmoid(beta * s_w)
        - 0.5 * F.logsigmoid(-beta * s_w)
        - 0.5 * F.logsigmoid(-beta * s_l)
    )


def robust_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    epsilon: float,
) -> torch.Tensor:
    """L_rDPO = [-(1 - eps) log sigmoid(beta D) + eps log sigmoid(-beta D)] / (1 - 2 eps): robust
    DPO (Chowdhury et al. 2024), an unbiased loss under labels flipped with probability eps
    (TRL's "robust")."""
    if not 0 <= epsilon < 0.5:
        raise ValueError(f"robust DPO epsilon = {epsilon} must lie in [0, 0.5)")
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    z = beta * (s_w - s_l)
    return (-(1 - epsilon) * F.logsigmoid(z) + epsilon * F.logsigmoid(-z)) / (1 - 2 * epsilon)


def bco_pair_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_BCO = -log sigmoid(beta s_w) - log sigmoid(-beta s_l): binary classifier optimisation
    (Jung et al. 2024) on the pair, each response classified on its own; without the running
    reward shift of TRL's BCO trainer, as TRL's "bco_pair" has none."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(beta * s_w) - F.logsigmoid(-beta * s_l)


def sppo_hard_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_SPPO = (s_w - 1/(2 beta))^2 + (s_l + 1/(2 beta))^2: self-play preference optimisation
    (Wu et al. 2024, eq. 4.7) with hard win probabilities 1 and 0 (TRL's "sppo_hard")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return (s_w - 0.5 / beta) ** 2 + (s_l + 0.5 / beta) ** 2


def aot_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_AOT = -log sigmoid(beta [sort(m_pi) - sort(m_ref)]), m = log p(y_w) - log p(y_l) per pair:
    alignment via optimal transport (Melnyk et al. 2024): the policy's and the reference's margins
    each sorted across the batch, so the loss asks the policy's distribution of margins to dominate
    the reference's (TRL's "aot"). It couples the rows of a batch."""
    delta = (
        torch.sort(policy_chosen - policy_rejected, dim=0).values
        - torch.sort(ref_chosen - ref_rejected, dim=0).values
    )
    return -F.logsigmoid(beta * delta)


def aot_unpaired_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L = -log sigmoid(beta (sort(s_w) - sort(s_l))): AOT with the chosen and the rejected
    log-ratios each sorted across the batch, for data that is not truly paired (TRL's
    "aot_unpaired")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(beta * (torch.sort(s_w, dim=0).values - torch.sort(s_l, dim=0).values))


def apo_zero_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_APO-zero = 1 - sigmoid(beta s_w) + sigmoid(beta s_l): anchored preference optimisation
    (D'Oosterlinck et al. 2024, eq. 7), for chosen responses better than the policy's own: y_w's
    likelihood up, y_l's down (TRL's "apo_zero")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return 1 - torch.sigmoid(beta * s_w) + torch.sigmoid(beta * s_l)


def apo_down_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_APO-down = sigmoid(beta s_w) + 1 - sigmoid(beta D) (eq. 8), for chosen responses worse
    than the policy's own: both likelihoods down, y_l's more (TRL's "apo_down")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return torch.sigmoid(beta * s_w) + 1 - torch.sigmoid(beta * (s_w - s_l))


def discopop_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    tau: float,
) -> torch.Tensor:
    """L_DiscoPOP = (1 - w) (-log sigmoid(beta D)) + w exp(-beta D), w = sigmoid(beta D / tau):
    the log-ratio modulated loss found by LLM-driven discovery (Chris Lu et al. 2024, eq. 5),
    logistic for pairs the policy gets wrong, exponential for those it gets right (TRL's
    "discopop", tau 0.05)."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    z = beta * (s_w - s_l)
    w = torch.sigmoid(z / tau)
    return -F.logsigmoid(z) * (1 - w) + torch.exp(-z) * w


def dpo_norm_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L = -log sigmoid(beta (s_w / |y_w| - s_l / |y_l|)): DPO on per-token mean log-ratios, so a
    long response does not win by its length (TRL's "sigmoid_norm")."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(
        beta * (s_w / chosen_length.clamp(min=1) - s_l / rejected_length.clamp(min=1))
    )


# --- f-DPO (Wang et al. 2024): DPO under another f-divergence than the reverse KL --------------
# With the regulariser D_f(pi || ref), the implicit reward is beta f'(pi / ref): DPO's
# log-ratio s is replaced by f'(exp(s)) in -log sigmoid(beta (f'_w - f'_l)) (TRL's
# `f_divergence_type`; reverse KL, f'(u) = log u + 1, is DPO).


def f_dpo_forward_kl_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Forward KL, f(u) = -log u: f'(u) = 1 - 1/u, so s -> 1 - exp(-s)."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(beta * ((1 - torch.exp(-s_w)) - (1 - torch.exp(-s_l))))


def f_dpo_js_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Jensen-Shannon: f'(u) = log(2u / (1 + u)), so s -> log 2 + log sigmoid(s)."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(
        beta * ((math.log(2) + F.logsigmoid(s_w)) - (math.log(2) + F.logsigmoid(s_l)))
    )


def f_dpo_alpha_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    alpha: float,
) -> torch.Tensor:
    """alpha-divergence: f'(u) = (u^(alpha - 1) - 1) / (alpha - 1), so
    s -> (exp((alpha - 1) s) - 1) / (alpha - 1); the exponent is capped at 80 as TRL caps it (fp32
    stays finite). alpha -> 1 is the reverse KL, DPO."""
    s_w, s_l = _logratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    if abs(alpha - 1) < 1e-6:
        return -F.logsigmoid(beta * (s_w - s_l))

    def f_prime(s):
        return (torch.exp(((alpha - 1) * s).clamp(max=80.0)) - 1) / (alpha - 1)

    return -F.logsigmoid(beta * (f_prime(s_w) - f_prime(s_l)))


# --- Without a reference model: SimPO, CPO, ORPO ----------------------------------------------


def simpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    beta: float,
    gamma: float,
) -> torch.Tensor:
    """L_SimPO = -log sigmoid(beta (log pi(y_w) / |y_w| - log pi(y_l) / |y_l|) - gamma): the
    policy's length-normalised likelihood as the implicit reward, no reference, a target margin
    gamma (Meng et al. 2024, eq. 6; TRL's CPOTrainer with loss_type="simpo", cpo_alpha 0)."""
    margin = policy_chosen / chosen_length.clamp(min=1) - policy_rejected / rejected_length.clamp(
        min=1
    )
    return -F.logsigmoid(beta * margin - gamma)


def cpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    beta: float,
    alpha: float,
) -> torch.Tensor:
    """L_CPO = -log sigmoid(beta (log pi(y_w) - log pi(y_l))) + alpha (-log pi(y_w) / |y_w|):
    contrastive preference optimisation (Xu et al. 2024, eq. 3 plus its NLL term), DPO's loss with
    the reference dropped and the chosen response's likelihood kept up (TRL's CPOTrainer,
    loss_type="sigmoid", cpo_alpha; TRL averages the NLL over the batch's tokens, here over each
    response's, then the batch)."""
    return -F.logsigmoid(
        beta * (policy_chosen - policy_rejected)
    ) - alpha * policy_chosen / chosen_length.clamp(min=1)


def orpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    lam: float,
) -> torch.Tensor:
    """L_ORPO = -log P(y_w) - lam log sigmoid(log odds(y_w) - log odds(y_l)), with P(y) the
    length-normalised likelihood exp(log pi(y) / |y|) and odds(y) = P(y) / (1 - P(y)): the
    odds-ratio preference term on top of SFT, no reference (Hong et al. 2024, eqs. 2-7; TRL's
    ORPOTrainer with beta = lam, which averages the NLL over the batch's tokens)."""
    mean_w = policy_chosen / chosen_length.clamp(min=1)
    mean_l = policy_rejected / rejected_length.clamp(min=1)

    def log1mexp(x):  # log(1 - exp(x)) for x < 0, stable at both ends
        return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))

    log_odds = (mean_w - mean_l) - (log1mexp(mean_w) - log1mexp(mean_l))
    return -mean_w - lam * F.logsigmoid(log_odds)


# --- KTO (Ethayarajh et al. 2024): unpaired desirable and undesirable responses ----------------


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    z0: torch.Tensor,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> torch.Tensor:
    """L_KTO(y) = lambda_D (1 - sigmoid(beta (s - z0))) for a desirable y,
    lambda_U (1 - sigmoid(beta (z0 - s))) for an undesirable one, s = log pi(y) - log ref(y).

    z0, the reference point, estimates KL(pi || ref) from the batch (kto_reference_point); it
    carries no gradient. `desirable` is a bool per response; returns (B,).
    """
    s = policy_logps - ref_logps
    return torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (s - z0))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z0 - s))),
    )


def kto_reference_point(
    policy_mismatched: torch.Tensor, ref_mismatched: torch.Tensor
) -> torch.Tensor:
    """z0 = max(0, mean over the batch of log pi(y'|x) - log ref(y'|x)), on mismatched pairs (each
    prompt with another row's response): KTO's estimate of KL(pi || ref), without gradient."""
    return (policy_mismatched - ref_mismatched).mean().detach().clamp(min=0)


# --- Online, on the policy's own groups of samples: GRPO and RLOO -------------------------------
# A rollout holds G samples of each prompt, consecutive: rewards (B,) reshape to (B / G, G).


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """A_i = (r_i - mean_G r) / (std_G r + eps): GRPO's group-normalised advantage (Shao et al.
    2024, eq. 3; the unbiased std and eps as TRL's scale_rewards="group"), one per sample, given
    to every token of it. A group whose rewards are all equal has A = 0: it teaches nothing."""
    groups = rewards.view(-1, group_size)
    mean, std = groups.mean(-1, keepdim=True), groups.std(-1, keepdim=True)
    return ((groups - mean) / (std + eps)).view(-1)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """A_i = r_i - 1/(G - 1) sum_{j != i} r_j: RLOO's baseline, the mean reward of the prompt's
    other samples (Ahmadian et al. 2024, eq. 5), unbiased since it does not use r_i."""
    groups = rewards.view(-1, group_size)
    baseline = (groups.sum(-1, keepdim=True) - groups) / (group_size - 1)
    return (groups - baseline).view(-1)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    clip: float,
) -> torch.Tensor:
    """L_GRPO = 1/|o| sum_t [-min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) + beta D_t],
    rho_t = pi / pi_old per token, D_t = pi_ref/pi - log(pi_ref/pi) - 1 (the k3 estimator of
    KL(pi || pi_ref), >= 0): the KL is a loss term, not a reward (Shao et al. 2024, eq. 3; TRL's
    GRPOTrainer, loss_type="grpo"). Token tensors (B, T) with mask (B, T); returns (B,)."""
    ratio = torch.exp(logps - old_logps)
    a = advantages.unsqueeze(-1)
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
    per_token = torch.where(mask, -surrogate + beta * kl, torch.zeros_like(kl))
    return per_token.sum(-1) / mask.sum(-1).clamp(min=1)


def kl_penalised_scores(
    scores: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """r = score - beta sum_t (log pi_old(y_t) - log ref(y_t)): RLOO's reward, the KL folded in per
    sequence (k1, the sampling policy's log-ratio; TRL's RLOOTrainer). Token log-probs (B, T), 0
    outside the response; returns (B,)."""
    return scores - beta * (old_logps - ref_logps).sum(-1)


def rloo_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """L_RLOO = -min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = pi(y) / pi_old(y) per sequence
    (REINFORCE with the leave-one-out baseline, clipped as TRL's RLOOTrainer does for several
    updates per rollout). Sequence log-probs (B,); returns (B,)."""
    ratio = torch.exp(logps - old_logps)
    return -torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
