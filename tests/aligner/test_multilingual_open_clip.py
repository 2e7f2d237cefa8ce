"""The multilingual open_clip route (`--model open_clip:xlm-roberta-base-ViT-B-32/FILE` and its kind),
offline: open_clip models whose text tower is a Hugging Face transformer with a Hugging Face
tokenizer. The test builds a small XLM-RoBERTa-style tokenizer with the `tokenizers` library and a
small random XLM-RoBERTa of the real architecture, saves both in a folder, writes an open_clip model
config that names that folder (as xlm-roberta-base-ViT-B-32's names the hub's), saves weights for
it, and loads them through crossmodal's `open_clip:ARCH/FILE` route to embed a Chinese query. The
torch-free and trimmed query paths, which compute open_clip's causal BPE towers only, must step
aside for it and leave the vectors to the model itself."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from crossmodal.aligner import load_aligner
from crossmodal.aligner.fast_text import QueryTextEncoder
from crossmodal.aligner.text_only import text_only_model

CORPUS = [
    "数字七", "有人说七", "手写的七", "一张手写数字三的图片", "有人說八", "數字九", "零 一 二 三 四 五 六 七 八 九",
    "siete", "el número siete", "sieben", "die Ziffer fünf", "sept", "le chiffre huit", "seven", "a handwritten seven",
    "someone saying two", "the digit 7", "0 1 2 3 4 5 6 7 8 9",
]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def hf_text_ref(tmp_path_factory) -> tuple[str, str]:
    """(``open_clip:ARCH/FILE`` reference, HF folder) of a tiny CLIP whose text tower is XLM-RoBERTa."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    root = tmp_path_factory.mktemp("hf-clip")
    folder = root / "tiny-xlm-roberta"
    # A SentencePiece-style unigram tokenizer, as XLM-RoBERTa's: NFKC, metaspace, <s> ... </s>.
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS * 20, trainers.UnigramTrainer(vocab_size=300, special_tokens=SPECIALS,
                                                                 unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>"
                            ).save_pretrained(folder)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
                              pad_token_id=tok.token_to_id("<pad>"), bos_token_id=tok.token_to_id("<s>"),
                              eos_token_id=tok.token_to_id("</s>"))
    torch.manual_seed(5)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    arch = "tiny-xlm-roberta-vit"
    (root / f"{arch}.json").write_text(json.dumps({
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"hf_model_name": str(folder), "hf_tokenizer_name": str(folder), "hf_pooler_type": "mean_pooler",
                     "hf_proj_type": "linear", "context_length": 32},
    }), encoding="utf-8")
    open_clip.add_model_config(root / f"{arch}.json")  # as open_clip ships xlm-roberta-base-ViT-B-32's
    model = open_clip.create_model(arch, pretrained_text=False)
    weights = root / "tiny-xlm-roberta-vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    # As for xlm-roberta-base-ViT-B-32, the CLIP file holds the text weights: the folder keeps only the
    # model's config and tokenizer (a route that still read the transformer's own weights would fail).
    (folder / "model.safetensors").unlink()
    return f"open_clip:{arch}/{weights}", str(folder)


def test_hf_tokenizer_keeps_chinese_queries_apart(hf_text_ref):
    _, folder = hf_text_ref
    tokenizer = open_clip.get_tokenizer(hf_text_ref[0].removeprefix("open_clip:").split("/")[0])
    ids = tokenizer(["数字七", "数字三", "有人說八"]).numpy()
    assert ids.shape == (3, 32)
    unknown = 3  # <unk>
    assert not (ids == unknown).any()
    assert len({tuple(row) for row in ids}) == 3


def test_chinese_query_through_crossmodal_open_clip_route(hf_text_ref):
    ref, _ = hf_text_ref
    aligner = load_aligner(ref)
    assert type(aligner.tower("text").backbone.clip).__name__ == "CustomTextCLIP"
    queries = ["数字七", "有人说七", "siete", "数字三"]
    vectors = aligner.embed_texts(queries)
    assert vectors.shape == (4, 24) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The same vectors as open_clip itself computes from the same file and tokenizer.
    arch, weights = ref.removeprefix("open_clip:").split("/", 1)
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=weights, pretrained_text=False)
    with torch.inference_mode():
        theirs = model.eval().encode_text(open_clip.get_tokenizer(arch)(queries), normalize=True).numpy()
    np.testing.assert_allclose(vectors, theirs, atol=1e-5)
    assert abs(float(vectors[0] @ vectors[3])) < 0.9999  # 七 and 三 are different queries


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_fast_paths_step_aside_for_hf_text_towers(hf_text_ref, mode):
    """No torch-free tower (it computes open_clip's BPE towers only), and the query encoder runs the
    HF tower whole, unquantised, giving the model's own vectors."""
    ref, _ = hf_text_ref
    assert text_only_model(ref) is None
    aligner = load_aligner(ref)
    encoder = QueryTextEncoder(aligner, mode)
    assert not encoder.trimmed and not encoder.quantised
    queries = ["数字七", "手寫的九", "בדיקה", "e\u0301"]
    np.testing.assert_allclose(encoder.embed_texts(queries), aligner.embed_texts(queries), atol=1e-6)
