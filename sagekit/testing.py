"""``sagekit.testing``: random-weight pipelines of real architectures, built offline.

For tests (tiny pipelines of each family, sized as diffusers' own fast tests size them,
with real tokenizers built locally) and for benchmarks (FLOPs do not depend on the
weights). Every builder writes a folder that the stock diffusers pipeline loads;
``TINY_BUILDERS`` names one per supported pipeline class.

Tokenizers: CLIP's BPE tokenizer rebuilt from the merges open_clip ships, and a T5-style
(SentencePiece unigram, ``</s>``-terminated) tokenizer built with ``tokenizers``. Neither
needs a download.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel,
                       IFPipeline, PixArtAlphaPipeline, PixArtSigmaPipeline, PixArtTransformer2DModel,
                       SD3Transformer2DModel, StableDiffusion3Pipeline, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5Config,
                          T5EncoderModel, T5TokenizerFast)


def clip_tokenizer(folder: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """CLIP's own BPE tokenizer (49,408 tokens: 256 byte symbols, their word-final forms,
    48,894 merges, start and end of text), rebuilt from the merges file open_clip ships."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:CLIP_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


CLIP_MERGES, CLIP_VOCAB = 48894, 49408


def tiny_sd_components(seed: int = 0, learned_variance: bool = False, latent: bool = True,
                       sample_size: int = 8, max_length: int = 77, workdir: str | Path = "/tmp") -> dict:
    """Random tiny components in the Stable Diffusion layout (latent) or the IF layout (pixel)."""
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_config(max_length))
    channels = 4 if latent else 3
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels * (2 if learned_variance else 1),
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )
    parts = {"text_encoder": text_encoder, "unet": unet,
             "tokenizer": clip_tokenizer(Path(workdir) / f"tiny-tokenizer-{seed}", max_length)}
    if latent:
        parts["vae"] = _tiny_vae(sample_size * 2)
        parts["scheduler"] = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    else:
        parts["scheduler"] = DDPMScheduler(beta_schedule="squaredcos_cap_v2",
                                           variance_type="learned_range" if learned_variance else "fixed_small")
    return parts


def save_tiny_pipeline(folder: str | Path, seed: int = 0, learned_variance: bool = False,
                       latent: bool = True) -> Path:
    """Write a tiny random pipeline folder loadable by ``DiffusionPipeline.from_pretrained``."""
    folder = Path(folder)
    parts = tiny_sd_components(seed, learned_variance, latent, workdir=folder.parent)
    if latent:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    else:
        pipe = IFPipeline(**parts, safety_checker=None, feature_extractor=None, watermarker=None,
                          requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _tiny_vae(sample_size: int, **extra) -> AutoencoderKL:
    """Two blocks: images twice the latent side."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32, sample_size=sample_size, **extra,
    )


def tiny_t5_tokenizer() -> T5TokenizerFast:
    """A real T5-style tokenizer: SentencePiece unigram over lower-case letters, a word
    start marker, ``<pad>`` = 0, ``</s>`` = 1 appended to every text, ``<unk>`` = 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_lowercase] + [("\u2581" + c, -2.5) for c in string.ascii_lowercase]
    pieces += [(c, -4.0) for c in ".,'!?"]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)


def tiny_t5_encoder(d_model: int = 32) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=64, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, decoder_start_token_id=0))


def _clip_config(max_length: int = 77, **extra) -> CLIPTextConfig:
    """A two-layer CLIP text tower over CLIP's real vocabulary."""
    return CLIPTextConfig(vocab_size=CLIP_VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=max_length, bos_token_id=CLIP_VOCAB - 2,
                          eos_token_id=CLIP_VOCAB - 1, pad_token_id=CLIP_VOCAB - 1, **extra)


def save_tiny_sdxl_pipeline(folder: str | Path, seed: int = 0, sample_size: int = 8, max_length: int = 77) -> Path:
    """A tiny random SDXL-base folder: two CLIP text encoders (the second with a projection,
    whose pooled output conditions the UNet), a UNet with ``text_time`` micro-conditioning
    (original size, crop, target size), a VAE and Euler sampling."""
    folder = Path(folder)
    torch.manual_seed(seed)

    time_dim, pooled_dim = 8, 32
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
        cross_attention_dim=64,  # the two encoders' hidden states, concatenated (32 + 32)
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + pooled_dim,
    )
    tokenizers = [clip_tokenizer(folder.parent / f"tiny-sdxl-tokenizer-{seed}-{i}", max_length) for i in (1, 2)]
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(sample_size * 2), text_encoder=CLIPTextModel(_clip_config(max_length)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(max_length, projection_dim=pooled_dim)),
        tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_sd3_pipeline(folder: str | Path, seed: int = 0, sample_size: int = 8, max_length: int = 77,
                           t5: bool = True) -> Path:
    """A tiny random SD3 folder: an MMDiT over 4-channel latents, CLIP-L and CLIP-G (both
    projected, pooled 2 x 32), a T5 encoder whose width the CLIP states are padded to
    (``t5=False``: a folder without it), a VAE with a shift factor, and flow matching."""
    folder = Path(folder)
    torch.manual_seed(seed)
    t5_width = 96
    transformer = SD3Transformer2DModel(
        sample_size=sample_size, patch_size=1, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=t5_width, pooled_projection_dim=64,
    )
    clips = [CLIPTextModelWithProjection(_clip_config(max_length, projection_dim=32)) for _ in range(2)]
    tokenizers = [clip_tokenizer(folder.parent / f"tiny-sd3-tokenizer-{seed}-{i}", max_length) for i in (1, 2)]
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_vae(sample_size * 2, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False,
                      use_post_quant_conv=False),
        text_encoder=clips[0], tokenizer=tokenizers[0], text_encoder_2=clips[1], tokenizer_2=tokenizers[1],
        text_encoder_3=tiny_t5_encoder(t5_width) if t5 else None, tokenizer_3=tiny_t5_tokenizer() if t5 else None,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_flux_pipeline(folder: str | Path, seed: int = 0, guidance_embeds: bool = True,
                            max_length: int = 77) -> Path:
    """A tiny random Flux.1 folder (dev with ``guidance_embeds``, else schnell): a
    double-stream and a single-stream block over 2x2-packed 4-channel latents, CLIP
    (pooled) and T5 (sequence) text encoders, and dynamically shifted flow matching. Its
    denoiser fixes no image size: load it with ``resolution=16``."""
    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds,
        axes_dims_rope=(2, 2, 4),
    )
    pipe = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
        vae=_tiny_vae(32, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False,
                      use_post_quant_conv=False),
        text_encoder=CLIPTextModel(_clip_config(max_length)),
        tokenizer=clip_tokenizer(folder.parent / f"tiny-flux-tokenizer-{seed}", max_length),
        text_encoder_2=tiny_t5_encoder(32), tokenizer_2=tiny_t5_tokenizer(),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_pixart_pipeline(folder: str | Path, seed: int = 0, sample_size: int = 8, sigma: bool = False) -> Path:
    """A tiny random PixArt-alpha (or ``sigma``) folder: a DiT with learned sigma (8 output
    channels for 4 latent ones) conditioned on a T5 encoder and its mask, DPM-Solver."""
    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=sample_size, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
        caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6,
    )
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    pipe = cls(tokenizer=tiny_t5_tokenizer(), text_encoder=tiny_t5_encoder(32), vae=_tiny_vae(sample_size * 2),
               transformer=transformer, scheduler=DPMSolverMultistepScheduler())
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_if_pipeline(folder: str | Path, seed: int = 0, sample_size: int = 8) -> Path:
    """A tiny random DeepFloyd IF stage I folder: a pixel-space UNet with learned variance
    (6 output channels), conditioned on a T5 encoder through a text projection as IF is,
    and DDPM with ``learned_range`` variance."""
    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=3, out_channels=6, block_out_channels=(32, 64), layers_per_block=1,
        norm_num_groups=32, down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"), mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        cross_attention_dim=32, attention_head_dim=8, addition_embed_type="text", addition_embed_type_num_heads=2,
        encoder_hid_dim=32, encoder_hid_dim_type="text_proj", resnet_time_scale_shift="scale_shift",
        act_fn="gelu", class_embed_type=None,
    )
    pipe = IFPipeline(tokenizer=tiny_t5_tokenizer(), text_encoder=tiny_t5_encoder(32), unet=unet,
                      scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                                              clip_sample=True, thresholding=False),
                      safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_random_timm_judge(folder: str | Path, labels, arch: str = "test_resnet", seed: int = 0,
                           input_size: int = 32) -> Path:
    """A random-weight timm classifier over ``labels``, saved as ``timm.models.save_for_hf``
    writes a hub model (config.json with its label names, model.safetensors): what
    ``timm:<folder>`` loads, e.g. as an ``ensemble:`` member in tests."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(labels),
                              pretrained_cfg_overlay=dict(input_size=(3, input_size, input_size),
                                                          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    timm.models.save_for_hf(model, Path(folder), safe_serialization=True,
                            model_config={"label_names": list(labels)})
    return Path(folder)


def save_tiny_hf_classifier(folder: str | Path, labels, seed: int = 0) -> Path:
    """A tiny random-weight transformers image classifier (ViT) over ``labels``, saved as
    ``save_pretrained`` writes one (safetensors, with its image processor): what
    ``hf:<folder>`` loads."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=37, num_labels=len(labels), id2label=dict(enumerate(labels)),
                    label2id={l: i for i, l in enumerate(labels)})
    ViTForImageClassification(cfg).save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)


def _question_words() -> list[str]:
    """Words of the toy grammar and of the judges' questions: a tiny VQA model's vocabulary."""
    from .toy.grammar import vocabulary

    asked = "is there a an in the image photo of does this figure show yes no please answer or".split()
    return sorted({w for w in (*vocabulary(), *asked) if w.isalpha()})


def save_tiny_blip_vqa(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random-weight BLIP question-answering model (``BlipForQuestionAnswering``,
    32 x 32 images) with a real WordPiece tokenizer built offline (the toy grammar's words,
    then single characters), saved with its processor as ``from_pretrained`` reads it:
    what ``vqa:<folder>`` loads."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import (BertTokenizerFast, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor,
                              BlipProcessor)

    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *_question_words(), *chars,
                                *("##" + c for c in chars)]))
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", ids["[CLS]"]),
                                                                       ("[SEP]", ids["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                  cls_token="[CLS]", mask_token="[MASK]", bos_token="[DEC]")
    torch.manual_seed(seed)
    text = dict(vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                projection_dim=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                bos_token_id=ids["[DEC]"], pad_token_id=ids["[PAD]"], sep_token_id=ids["[SEP]"],
                eos_token_id=ids["[SEP]"], initializer_range=0.2)  # wide enough that answers differ by question
    vision = dict(hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8, initializer_range=0.2)
    model = BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision, projection_dim=32,
                                                image_text_hidden_size=32))
    model.save_pretrained(folder, safe_serialization=True)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return Path(folder)


# SmolVLM's chat layout: "<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:"
SMOLVLM_CHAT = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
                "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
                "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
                "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def save_tiny_smolvlm(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random-weight SmolVLM (``Idefics3ForConditionalGeneration``: a SigLIP-style
    vision encoder, pixel shuffle, a Llama decoder; 32 x 32 images, no image splitting)
    with a byte-level BPE tokenizer trained offline on the toy grammar and a chat template
    of SmolVLM's layout: what ``vqa:<folder>`` loads as a chat model."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor, PreTrainedTokenizerFast)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
               "<global-img>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(_question_words()), "User: Assistant: Yes No ?"], vocab_size=500,
                            min_frequency=1, special_tokens=special)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|im_start|>",
                                  eos_token="<end_of_utterance>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                  extra_special_tokens={"image_token": "<image>",
                                                        "fake_image_token": "<fake_token_around_image>",
                                                        "global_image_token": "<global-img>",
                                                        "end_of_utterance_token": "<end_of_utterance>"})
    torch.manual_seed(seed)
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                initializer_range=0.2)  # wide enough that answers differ by image and question
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8, initializer_range=0.2)
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=2,
                            image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    Idefics3ForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    image = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 32},
                                   max_image_size={"longest_edge": 32})
    # (32 / 8)^2 patches, pixel-shuffled by 2 x 2: 4 image tokens
    Idefics3Processor(image, tok, image_seq_len=4, chat_template=SMOLVLM_CHAT).save_pretrained(folder)
    return folder


# pipeline class -> the builder of its tiny folder (and the extra ``load_generator`` arguments it needs)
TINY_BUILDERS = {
    "StableDiffusionPipeline": (save_tiny_pipeline, {}),
    "StableDiffusionXLPipeline": (save_tiny_sdxl_pipeline, {}),
    "StableDiffusion3Pipeline": (save_tiny_sd3_pipeline, {}),
    "FluxPipeline": (save_tiny_flux_pipeline, {"resolution": 16}),
    "PixArtAlphaPipeline": (save_tiny_pixart_pipeline, {}),
    "PixArtSigmaPipeline": (lambda folder, seed=0: save_tiny_pixart_pipeline(folder, seed, sigma=True), {}),
    "IFPipeline": (save_tiny_if_pipeline, {}),
}


def save_random_open_clip(folder: str | Path, arch: str = "ViT-S-32-alt", seed: int = 0) -> Path:
    """A random-weight open_clip model of a real architecture (default: the smallest ViT
    open_clip ships, about 43 M parameters), saved as safetensors: what
    ``open_clip:<arch>:<file>`` loads (as the CLIP scorer of AD and CLIP score in tests)."""
    import open_clip
    from safetensors.torch import save_model

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    path = Path(folder) / "open_clip_model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path))
    return path


def save_tiny_gpt2(folder: str | Path, corpus: list[str] | None = None, vocab_size: int = 400, seed: int = 0) -> Path:
    """A random-weight GPT-2 (two layers) with a real byte-level BPE tokenizer trained
    offline on ``corpus`` (default: "a photo of a ..." captions of the toy labels), saved
    as ``from_pretrained`` reads it: what the prompt search's ``lm`` takes in tests."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from .toy.scenes import LABELS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = corpus or [f"a photo of a {label} {where}" for label in LABELS
                        for where in ("on grass", "in the sky", "on the left", "at night")]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


# An open_clip architecture small enough for tests; a hub folder's open_clip_config.json names it.
TINY_OPEN_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                                                  "head_width": 32},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def save_tiny_open_clip_folder(folder: str | Path, seed: int = 0) -> Path:
    """A random-weight open_clip model laid out as an open_clip repo on the hub is:
    ``open_clip_config.json`` (model and preprocessing config; here the tiny
    :data:`TINY_OPEN_CLIP`) beside ``open_clip_model.safetensors``. open_clip's own
    ``local-dir:`` loading reads it, and so does sagekit once the folder is a tag's snapshot."""
    import open_clip
    from open_clip.model import CLIP
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_model(CLIP(**TINY_OPEN_CLIP), str(folder / "open_clip_model.safetensors"))
    preprocess = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP,
                                                              "preprocess_cfg": preprocess}, indent=1))
    return folder


def _imagenet_judge(arch: str, seed: int):
    def build(folder):
        from .labels import imagenet_labels

        return save_random_timm_judge(folder, imagenet_labels(), arch=arch, seed=seed)
    return build


# Tiny random-weight stand-ins of the hub models the README names, under their own ids: the same
# classes and folder layout (a diffusers pipeline, a timm save_for_hf folder, an open_clip repo, a
# GPT-2), so that every command the README gives runs offline against them (tests/test_readme.py).
HUB_STAND_INS = {
    "stabilityai/stable-diffusion-xl-base-1.0": save_tiny_sdxl_pipeline,
    "black-forest-labs/FLUX.1-schnell": lambda folder: save_tiny_flux_pipeline(folder, guidance_embeds=False),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": save_tiny_pipeline,
    "timm/convnext_base.fb_in22k_ft_in1k": _imagenet_judge("test_convnext", 1),
    "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k": _imagenet_judge("test_vit", 2),
    "timm/resnet50.a1_in1k": _imagenet_judge("test_resnet", 3),
    "timm/vit_huge_patch14_clip_224.laion2b_ft_in12k_in1k": _imagenet_judge("test_vit2", 4),
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": lambda folder: save_tiny_open_clip_folder(folder, seed=5),
    "timm/vit_base_patch32_clip_224.openai": lambda folder: save_tiny_open_clip_folder(folder, seed=6),
    "openai-community/gpt2": save_tiny_gpt2,
    "Salesforce/blip-vqa-base": save_tiny_blip_vqa,
    "HuggingFaceTB/SmolVLM-256M-Instruct": save_tiny_smolvlm,
}


def save_hub_stand_in(repo_id: str, cache: str | Path) -> Path:
    """Write the stand-in of ``repo_id`` (:data:`HUB_STAND_INS`) into the Hugging Face cache
    folder ``cache`` as ``hf download`` would leave it (``models--org--name/snapshots/<commit>``
    and ``refs/main``), so that ``HF_HUB_CACHE=cache`` with ``HF_HUB_OFFLINE=1`` finds it by
    its id. Returns the snapshot folder."""
    import hashlib

    if repo_id not in HUB_STAND_INS:
        raise KeyError(f"no stand-in for {repo_id!r}; known: {', '.join(HUB_STAND_INS)}")
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        HUB_STAND_INS[repo_id](snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return snapshot
