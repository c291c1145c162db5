"""The choices a run's settings take and the defaults that depend on its method (RunConfig: studio/train/config.py)."""

from studio.models.config_sizes import LORA_LAYER_CHOICES  # (the memory plan counts a LoRA of each)

METHODS = ("lora", "dreambooth", "textual-inversion", "finetune")
WHOLE_MODEL = ("dreambooth", "finetune")  # methods that train the whole denoiser and export a base model
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
# mixed precision; auto: decided at launch for the device (bf16 on a CUDA GPU, fp16 on one without bf16, none on a CPU)
PRECISIONS = ("auto", "no", "fp16", "bf16")
# gradient checkpointing; auto: decided at launch, on where the memory plan does not fit the GPU without it
CHECKPOINTING = ("auto", "on", "off")
# How the frozen base is stored while a LoRA trains on it: auto keeps it as mixed precision does (fp32, or the
# autocast dtype); bf16; fp8 and int8 weight-only (torchao), nf4 (bitsandbytes, CUDA): FLUX.1 in 12-24 GB.
BASE_PRECISIONS = ("auto", "bf16", "fp8", "int8", "nf4")
TIMESTEP_SAMPLING = ("sigmoid", "logit-normal", "uniform", "shift")  # the flow-matching families' noise levels
OPTIMIZERS = ("adamw", "adamw8bit")
# EMA of the trained weights (validation and export use the average): auto is on for finetune, off otherwise; cpu
# keeps the average in RAM (the GPU holds one copy of the model less; each step copies the weights over)
EMA_MODES = ("auto", "on", "cpu", "off")
LORA_LAYERS = LORA_LAYER_CHOICES  # which layers a LoRA adapts: see train/methods.py

# Learning rates that work out of the box: LoRA as kohya's default, DreamBooth as seed 004 (5e-6, 400 steps),
# textual inversion as diffusers' example (5e-4 on batch 1 with scale_lr off is slow; 5e-3 learns in a few hundred steps),
# full fine-tune as seed 001's run that worked (1e-5; its 1e-3 collapsed).
DEFAULT_LR = {"lora": 1e-4, "dreambooth": 5e-6, "textual-inversion": 5e-3, "finetune": 1e-5}

# Seed 002's validation prompts, shortened; `{trigger}` becomes the run's trigger word.
DEFAULT_VALIDATION_PROMPTS = (
    "a photo of {trigger} sitting in an office chair, working on a laptop",
    "a photo of {trigger} in a dark suit at a formal gala evening",
    "a photo of {trigger} presenting on a large screen in a conference room",
)
