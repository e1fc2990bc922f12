import pytest
import torch

from pipeline import cli, models
from pipeline.cli import CPU_PRECISION
from pipeline.models import autocast, cpu_has_bf16, load_causal_lm, precision
from pipeline.safe_loading import load_tokenizer


def test_pretrained_policy_loads_from_a_local_folder(policy_dir):
    model = load_causal_lm(str(policy_dir), "policy.init")
    tok = load_tokenizer(str(policy_dir), "policy.init")
    assert tok.padding_side == "left" and tok.pad_token_id == tok.eos_token_id
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == len(tok)


def test_missing_model_path_is_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="policy.init: model path '.*nowhere' does not exist"
    ):
        load_causal_lm(str(tmp_path / "nowhere"), "policy.init")


def test_hub_id_while_offline_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        FileNotFoundError, match="hub is unreachable.*set policy.init to the local folder"
    ):
        load_causal_lm("gpt2-large", "policy.init")


def test_pickle_only_folder_is_refused(policy_dir, tmp_path):
    model = load_causal_lm(str(policy_dir), "policy")
    folder = tmp_path / "pickled"
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="cannot load it"):
        load_causal_lm(str(folder), "policy")


def test_tokenizer_without_eos_is_refused(tokenizer, tmp_path):
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    bare.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no EOS token"):
        load_tokenizer(str(tmp_path), "policy.init")


def test_a_classifier_folder_is_not_a_causal_lm(classifier_dir):
    with pytest.raises(
        ValueError,
        match=r"is not a causal LM \(architectures: \['GPT2ForSequenceClassification'\]\)",
    ):
        load_causal_lm(str(classifier_dir), "policy")


def test_a_folder_without_weights_is_refused(policy_dir, tmp_path):
    load_causal_lm(str(policy_dir), "policy").config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"policy '{tmp_path}': cannot load it"):
        load_causal_lm(str(tmp_path), "policy")


def test_a_tokenizer_folder_loads_as_auto_tokenizer_loads_it(tokenizer, tmp_path):
    """The tokenizer stage's folder skips AutoTokenizer (and the import of torch it brings); the
    tokenizer must be the one AutoTokenizer gives, token for token."""
    from transformers import AutoTokenizer

    from pipeline.safe_loading import tokenizer_loader

    tokenizer.save_pretrained(tmp_path)
    assert tokenizer_loader(str(tmp_path)).__self__.__name__ in (
        "TokenizersBackend",
        "PreTrainedTokenizerFast",
    )
    ours = load_tokenizer(str(tmp_path), "tokenizer")
    auto = AutoTokenizer.from_pretrained(str(tmp_path), padding_side="left")
    assert type(ours) is type(auto)
    assert (ours.padding_side, ours.model_max_length, ours.all_special_ids, len(ours)) == (
        auto.padding_side,
        auto.model_max_length,
        auto.all_special_ids,
        len(auto),
    )
    texts = [
        "A film that, frankly, nobody should miss!",
        "Worst. Movie. Ever... 0/10 <|endoftext|>",
    ]
    assert (
        ours(texts, add_special_tokens=False)["input_ids"]
        == auto(texts, add_special_tokens=False)["input_ids"]
    )
    ids = auto(texts)["input_ids"]
    assert ours.batch_decode(ids) == auto.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == auto.batch_decode(
        ids, skip_special_tokens=True
    )


def test_a_model_folder_still_goes_through_auto_tokenizer(policy_dir):
    from pipeline.safe_loading import tokenizer_loader

    assert tokenizer_loader(str(policy_dir)).__self__.__name__ == "AutoTokenizer"


def test_the_tokenizer_prompts_and_vader_score_stages_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, pipeline.stages.tokenizer, pipeline.stages.prompts, pipeline.stages.score,"
        " pipeline.rewards;"
        " from pipeline.rewards import Reward, make_scorer;"
        " make_scorer(Reward(backend='vader', model=None, positive_label='', batch_size=1,"
        " max_length=1))(['a fine film']);"
        " print(sorted(m for m in ('torch', 'transformers.models.auto') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stages_let_torch_threads_spin_briefly_unless_told_otherwise():
    import os
    import subprocess
    import sys

    def wait(**env):
        code = (
            "import pipeline, torch, os;"
            " print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
        )
        environ = {
            k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
        } | env
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environ
        ).stdout.split()

    assert wait() == ["1000", "None"]
    assert wait(OMP_WAIT_POLICY="passive") == ["None", "passive"]
    assert wait(GOMP_SPINCOUNT="0") == ["0", "None"]


AVX2_ONLY = "flags\t\t: fpu sse sse2 fma avx avx2 bmi2\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON3 = "Features\t: fp asimd evtstrm sve bf16 i8mm\n"


@pytest.mark.parametrize(
    "cpuinfo,native",
    [(AVX2_ONLY, False), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True), ("", False)],
)
def test_bf16_counts_as_the_cpus_own_only_with_its_instructions(cpuinfo, native):
    assert cpu_has_bf16(cpuinfo) is native


def test_the_cpu_precision_comes_from_the_stage_argument_and_auto_asks_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(CPU_PRECISION, raising=False)  # restored after, whatever cli sets
    assert precision(cpu) == "fp32"
    cli.parse("a stage", [], [], ["--precision", "bf16"])
    assert precision(cpu) == "bf16"
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    for native in (True, False):
        monkeypatch.setattr(models, "cpu_has_bf16", lambda native=native: native)
        cli.parse("a stage", [], [], ["--precision", "auto"])
        assert precision(cpu) == ("bf16" if native else "fp32")
    cli.parse("a stage", [], [], ["--precision", "fp32"])
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert precision(torch.device("cuda")) == "bf16"  # CUDA: bf16 whatever the CPU's setting
    monkeypatch.setenv(CPU_PRECISION, "fp16")
    with pytest.raises(ValueError, match=CPU_PRECISION):
        precision(cpu)
