"""Configurations of every toy-world model. Each is a stock library class, just small.

Kept in one place so that training, tests and docs agree on what the toy world is.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, GPT2Config, GPT2LMHeadModel

from .scenes import LABELS
from .text import MAX_LENGTH, vocabulary
from .attributes import ATTRIBUTE_JUDGES, OBJECT_JUDGES

RESOLUTION = 32
TEXT_DIM = 64
# Small registered timm architectures. The object judges: a resnet, a mobilenet, and a
# resnet behind the edge filter, so the ensemble sees the image three different ways; then
# one resnet per other attribute of a scene, and one for realism.
JUDGE_ARCHS = {**dict(zip(OBJECT_JUDGES, ("test_resnet", "mobilenetv3_small_050", "test_resnet"))),
               **{a: "test_resnet" for a in ATTRIBUTE_JUDGES}, "realism": "test_resnet"}
JUDGE_LR = {kind: 5e-3 if kind == "mobilenet" else 2e-3 for kind in JUDGE_ARCHS}
JUDGE_INPUT = 64  # judges see images upsampled to 64x64, as real ones resize to 224


def text_config() -> CLIPTextConfig:
    n = len(vocabulary())
    return CLIPTextConfig(
        vocab_size=n, hidden_size=TEXT_DIM, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_LENGTH, projection_dim=TEXT_DIM,
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )


def clip_model() -> CLIPModel:
    """CLIP pair: a 4-layer ViT on 4x4 patches and the 2-layer text transformer."""
    vision = CLIPVisionConfig(
        image_size=RESOLUTION, patch_size=4, hidden_size=96, intermediate_size=192,
        num_hidden_layers=4, num_attention_heads=4, projection_dim=TEXT_DIM, num_channels=3,
    )
    config = CLIPConfig(text_config=text_config().to_dict(), vision_config=vision.to_dict(), projection_dim=TEXT_DIM)
    return CLIPModel(config)


def caption_lm() -> GPT2LMHeadModel:
    n = len(vocabulary())
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=n, n_positions=MAX_LENGTH, n_embd=64, n_layer=2, n_head=4,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    ))


def autoencoder() -> AutoencoderKL:
    """32x32x3 <-> 16x16x4 (downsampling factor 2); an 8x8 latent loses the shapes."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=RESOLUTION,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        mid_block_add_attention=False,  # attention over 256 latent pixels quadruples encode time
    )


def latent_unet(learned_variance: bool = False, text_embed: bool = True, fine_attention: bool = False
                ) -> UNet2DConditionModel:
    """Epsilon-predicting UNet on 16x16x4 latents (the Stable Diffusion design, small).

    ``addition_embed_type="text"`` (``text_embed``) pools the prompt into the time
    embedding, a global conditioning path beside cross-attention that makes the small
    model learn prompts many times sooner on a CPU budget, and, with the causal encoder's
    end states, lets it draw without reading words (see ``sagekit.toy.probe``). ``learned_variance`` doubles the output channels
    (epsilon and the variance interpolation, as in GLIDE): paper 001's "latent-GLIDE",
    which differs from the fixed-variance model in nothing else.
    """
    return UNet2DConditionModel(
        sample_size=RESOLUTION // 2, in_channels=4, out_channels=8 if learned_variance else 4,
        block_out_channels=(48, 96, 96), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D" if fine_attention else "DownBlock2D", "CrossAttnDownBlock2D",
                          "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D" if fine_attention else "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=8, norm_num_groups=16,
        addition_embed_type="text" if text_embed else None,
    )


def pixel_unet(text_embed: bool = True) -> UNet2DConditionModel:
    """Pixel-space UNet with learned variance (the GLIDE design): 6 output channels,
    epsilon and the interpolation between the two variance bounds."""
    return UNet2DConditionModel(
        sample_size=RESOLUTION, in_channels=3, out_channels=6,
        block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=8, norm_num_groups=8,
        addition_embed_type="text" if text_embed else None,
    )


def train_scheduler(learned_variance: bool) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
        variance_type="learned_range" if learned_variance else "fixed_small", clip_sample=True,
    )


def sample_scheduler(learned_variance: bool, latent: bool = False):
    """The scheduler a pipeline ships with: DPM-Solver++ (2nd order) for the fixed-variance
    latent model, ancestral DDPM (which uses the learned variance) for the learned-variance
    models. Latents are not bounded to [-1, 1], so their DDPM does not clip its x0 estimate."""
    if learned_variance:
        sched = train_scheduler(True)
        if latent:
            # steps_offset=1 is what StableDiffusionPipeline insists on for its schedulers.
            sched.register_to_config(clip_sample=False, steps_offset=1)
        return sched
    # Judged right of 384 images of a first run of world 3's `toy` recipe (the shipped run: 0.945 at
    # DPM-Solver++ 20 and guidance 7.5; its other samplers not measured): DPM-Solver++ 10 / 15 / 20
    # steps 0.80 / 0.88 / 0.90 at guidance 5, 0.91 at 20 and guidance 7.5, DDIM 25 0.90. A UNet that
    # reads words needs more steps than world 2's, which read the end summary (0.966 at 10).
    return DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                       prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2,
                                       timestep_spacing="leading", steps_offset=1)


def num_labels() -> int:
    return len(LABELS)
