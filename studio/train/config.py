"""The run config: one typed dataclass for every method and its defaults per method and family (named presets:
studio/train/presets.py)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from studio.fields import setting
from studio.names import check_name
from studio.train.schedule import VALIDATION_BY

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
LORA_LAYERS = ("attention", "transformer", "all")  # which layers a LoRA adapts: see train/methods.py

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


@dataclass
class Subject:
    """One subject of a run: its dataset, the trigger word naming it, its class (DreamBooth's prior preservation, a
    textual-inversion token's start), how often its pictures are seen per epoch. The first subject of a run is its
    `dataset`/`trigger`/`repeats`/`class_prompt`/`init_word`; RunConfig.extra_subjects holds the others."""

    dataset: str
    trigger: str = ""  # "" is refused for an extra subject: each needs its own word
    class_word: str = ""  # e.g. "person", "dog"; "" means the run's (`init_word`)
    repeats: int = 0  # 0: the run's `repeats`
    class_prompt: str = ""  # "" means "a photo of a <class word>" (the run's `class_prompt` without a class word)

    @classmethod
    def parse(cls, line: str) -> "Subject":
        """`dataset:trigger[:class word[:repeats]]`, as the Train tab's "Extra subjects" lines read."""
        parts = [p.strip() for p in line.split(":")]
        if len(parts) < 2 or len(parts) > 4 or not parts[0] or not parts[1]:
            raise ValueError(f"`extra_subjects` line {line.strip()!r} must read dataset:trigger[:class word[:repeats]]")
        repeats = 0
        if len(parts) == 4 and parts[3]:
            if not parts[3].isdigit():
                raise ValueError(f"`extra_subjects` line {line.strip()!r}: repeats must be a whole number, not "
                                 f"{parts[3]!r}")
            repeats = int(parts[3])
        return cls(parts[0], parts[1], parts[2] if len(parts) > 2 else "", repeats)

    def line(self) -> str:
        """The subject as parse() reads it back (its class prompt aside)."""
        tail = [self.class_word, str(self.repeats) if self.repeats else ""]
        while tail and not tail[-1]:
            tail.pop()
        return ":".join([self.dataset, self.trigger, *tail])


@dataclass
class RunConfig:
    """Everything a training run needs; saved as run.json so a run can be resumed or repeated exactly. Each setting is
    declared once (studio.fields): the Train tab's widgets, `train`'s flags and /train_start's parameters are made
    from these declarations."""

    name: str = setting(label="Run name", help="also the name of the exported files", flag="--out")
    dataset: str = setting(label="Dataset", names="dataset",
                           help="a dataset from the Dataset tab, or a folder of images with .txt captions in "
                                "workspace/datasets/; again for a second subject (one --trigger each, in order)")
    method: str = setting("lora", label="Method", choices=METHODS)
    model: str = setting("", label="Base model", names="base model", help="\"\": the studio's default model")
    # The word that names the subject in captions and prompts. For textual inversion it is the new token.
    # "" means the run name (finetune: captions stay as the dataset has them; prompts' {trigger} is the run name).
    trigger: str = setting("", label="Trigger word", help="default: the dataset's trigger or the run name; textual "
                                                          "inversion: the new token")
    validation_prompts: list[str] = setting(
        default_factory=lambda: list(DEFAULT_VALIDATION_PROMPTS), label="Validation prompts (one a line)", lines=3,
        flag="--validation-prompt", help="{trigger} becomes the trigger word; prompt i always uses seed "
                                         "validation_seed + i")

    # ---- data ----
    # training side in pixels; 0: the family's native size (512 SD 1.x, 1024 SDXL), or a smaller model's own (64 px)
    resolution: int = setting(0, label="Resolution", group="length",
                              help="the side of the training pictures in pixels; 0: the model's native size")
    # aspect-ratio buckets (same area, sides in steps of 64) instead of square crops
    buckets: bool = setting(True, label="Aspect-ratio buckets", group="length", advanced=True)
    repeats: int = setting(1, label="Repeats", group="length", advanced=True,
                           help="times each picture is seen per epoch (kohya's numRepeats)")
    # random left-right flips; seed 002 found they hurt lettering, so off by default
    flip: bool = setting(False, label="Flip augmentation", group="data and hardware", advanced=True)
    shuffle_captions: bool = setting(False, label="Shuffle caption tags", group="data and hardware", advanced=True,
                                     help="shuffle comma-separated caption tags each step")
    keep_tokens: int = setting(1, label="Keep tokens", group="data and hardware", advanced=True,
                               help="leading caption tags kept in place when shuffling (the trigger stays first)")
    # cache VAE latents (and text embeddings when nothing trains the text) once per dataset
    cache: bool = setting(True, label="Cache latents and text", group="data and hardware", advanced=True)
    # More subjects learnt in the same run (Subject: dataset, trigger, class word, repeats, class prompt); the first
    # is `dataset`/`trigger` above. With `balance`, every subject is seen as often per epoch as the one with the most
    # pictures x repeats (the smaller sets repeated), so a small set is not drowned; captions stay as they are.
    extra_subjects: list[Subject] = setting(
        default_factory=list, label="Extra subjects (one a line: dataset:trigger[:class word[:repeats]])",
        group="subjects", advanced=True, lines=2, flag="--extra-subject", parse=Subject.parse,
        show=Subject.line,
        help="learnt in the same run as the dataset above; each scored on its own prompts and against the others' "
             "datasets")
    balance: bool = setting(True, label="Balance subjects", group="subjects", advanced=True,
                            help="each subject seen as often per epoch (the smaller set repeated)")
    # "Add a subject": a finished LoRA run (by name) whose last saved weights this run starts from, so its subjects
    # come along (what they keep is measured, not assumed: see docs/training.md); "" starts from the base.
    continue_from: str = setting("", label="Add a subject to run", group="subjects", advanced=True, names="run",
                                 methods=("lora",),
                                 help="a finished LoRA run to start from; its subjects come along (their scores "
                                      "before and after are yours to compare)")

    # ---- schedule ----
    batch_size: int = setting(1, label="Batch size", group="length", help="pictures per step")
    grad_accum: int = setting(1, label="Gradient accumulation", group="length", advanced=True,
                              help="micro-batches per optimizer step")
    epochs: int = setting(10, label="Epochs", group="length", help="an epoch: every picture seen once (x repeats)")
    max_steps: int = setting(0, label="Max steps", group="length", flag="--steps",
                             help="a step: one batch learnt; > 0 overrides epochs")
    lr: float = setting(0.0, label="Learning rate", group="length",
                        help="how far each step moves the weights; 0: the method's default")
    text_encoder_lr: float = setting(0.0, label="Text encoder lr", group="learning rate", advanced=True,
                                     methods=("lora", "dreambooth", "finetune"),
                                     help="0: the text encoder stays frozen (LoRA, DreamBooth)")
    lr_scheduler: str = setting("constant", label="LR scheduler", group="learning rate", advanced=True,
                                choices=SCHEDULERS)
    warmup_steps: int = setting(0, label="Warmup steps", group="learning rate", advanced=True)
    lr_cycles: int = setting(1, label="Restarts (cycles)", group="learning rate", advanced=True,
                             help="restarts of cosine_with_restarts")
    seed: int = setting(0, label="Seed", group="data and hardware", advanced=True)

    # ---- LoRA ----
    rank: int = setting(4, label="LoRA rank", group="length", methods=("lora",),
                        help="the LoRA's size: more learns more detail (and more of the photos' faults)")
    alpha: float = setting(4.0, label="LoRA alpha", group="LoRA", advanced=True, methods=("lora",),
                           help="the update is scaled by alpha / rank; alpha == rank means no scaling")
    dropout: float = setting(0.0, label="LoRA dropout", group="LoRA", advanced=True, methods=("lora",))
    # attention: attention projections only; transformer: all transformer-block layers (kohya's default);
    # all: also the ResNet convs (kohya's LoCon), for concepts the base model cannot draw yet
    lora_layers: str = setting("attention", label="LoRA layers", group="LoRA", advanced=True, choices=LORA_LAYERS,
                               methods=("lora",),
                               help="transformer: kohya's default; all adds the ResNet convs (LoCon): for shapes the "
                                    "base cannot draw")

    # ---- loss ----
    # 5 as in seed 002 (Hang et al. 2023) weighs down easy, low-noise steps
    min_snr_gamma: float = setting(0.0, label="Min-SNR gamma", group="loss", advanced=True, family_option=True,
                                   help="weighs down easy, nearly clean steps; 0 off, 5 in seed 002")
    noise_offset: float = setting(0.0, label="Noise offset", group="loss", advanced=True,
                                  help="0.1 in seed 002: lets the model learn darker and brighter images")
    # Weigh the loss by the dataset's masks (<stem>.mask.png: the Dataset tab's "Protect bystanders" and subject
    # masks, or painted by hand) when it has them; black pixels then weigh `unmasked_weight` (0: not learnt at all).
    masked_loss: bool = setting(True, label="Masked training", group="EMA, CLIP and masks", advanced=True,
                                help="the dataset's masks: bystanders and their blur are not learnt")
    unmasked_weight: float = setting(0.0, label="Weight of masked pixels", group="EMA, CLIP and masks", advanced=True,
                                     help="0: masked pixels are not learnt; 0.1 (OneTrainer's default) learns them a "
                                     "little")

    # ---- the flow-matching families (FLUX.1, Z-Image, FLUX.2, Qwen-Image) ----
    # How noise levels (sigmas) are drawn: sigmoid = sigmoid(N(0, 1)) as kohya's; logit-normal = sigmoid(N(logit_mean,
    # logit_std)) as diffusers'; uniform; shift = sigmoid draws pushed toward noise by `flow_shift`, 0 meaning the
    # family's own: the scheduler's static shift (FLUX.1 3, Z-Image), or (FLUX.2, Qwen-Image) the shift inference uses
    # at the picture's size.
    timestep_sampling: str = setting("sigmoid", label="Flow models: noise levels", group="flow models", advanced=True,
                                     choices=TIMESTEP_SAMPLING, family_option=True)
    logit_mean: float = setting(0.0, label="logit-normal mean", group="flow models", advanced=True,
                                family_option=True)
    logit_std: float = setting(1.0, label="logit-normal std", group="flow models", advanced=True, family_option=True)
    flow_shift: float = setting(0.0, label="Shift", group="flow models", advanced=True, family_option=True,
                                help="0: the family's (FLUX.1 3, Z-Image its scheduler's; FLUX.2 and Qwen-Image by "
                                     "picture size)")
    # the distilled guidance FLUX.1-dev trains at (kohya recommends 1; inference uses 3.5)
    flux_guidance: float = setting(1.0, label="Distilled guidance while training", group="flow models", advanced=True,
                                   family_option=True,
                                   help="FLUX.1-dev: 1 as kohya; generation uses 3.5")
    max_sequence_length: int = setting(0, label="T5 tokens", group="flow models", advanced=True, family_option=True,
                                       help="FLUX.1: 0 is 512 for dev, 256 for schnell")
    base_precision: str = setting("auto", label="Transformers: frozen base stored as", group="flow models",
                                  advanced=True, choices=BASE_PRECISIONS, family_option=True, methods=("lora",),
                                  help="FLUX.1 LoRA: bf16 ~24 GB, fp8/int8 (torchao) ~16 GB, nf4 (CUDA) ~12 GB; the "
                                       "presets say it for Z-Image, FLUX.2 klein, Qwen-Image")
    # FLUX-like transformers: this many of the transformer's blocks stay on the CPU and are moved in for each step
    # (kohya's blocks_to_swap): slower, but a FLUX.1-dev LoRA fits 8 GB
    blocks_to_swap: int = setting(0, label="Blocks kept on the CPU", group="flow models", advanced=True,
                                  help="transformer blocks moved in for each step (kohya's blocks_to_swap); 0: none")

    # ---- DreamBooth ----
    prior_preservation: bool = setting(False, label="Prior preservation (DreamBooth)", group="DreamBooth and TI",
                                       advanced=True, methods=("dreambooth",),
                                       help="also learn the class from the base's own pictures, so it is not forgotten")
    # what the class looks like without the subject
    class_prompt: str = setting("a photo of a person", label="Class prompt", group="DreamBooth and TI", advanced=True,
                                methods=("dreambooth",),
                                help="DreamBooth: what the class looks like without the subject")
    class_images: int = setting(50, label="Class images", group="DreamBooth and TI", advanced=True,
                                methods=("dreambooth",),
                                help="generated once by the base model and kept for later runs")
    prior_loss_weight: float = setting(1.0, label="Prior loss weight", group="DreamBooth and TI", advanced=True,
                                       methods=("dreambooth",))

    # ---- textual inversion ----
    init_word: str = setting("person", label="TI: init word", group="DreamBooth and TI", advanced=True,
                             methods=("textual-inversion",),
                             help="the new token starts as this word's embedding")
    vectors: int = setting(1, label="TI: vectors per token", group="DreamBooth and TI", advanced=True,
                           methods=("textual-inversion",))

    # ---- validation ----
    # When validation grids are made (train/schedule.py): by budget, at most `validation_budget` of the run's wall
    # time, spread over the run (the first epoch, the last, evenly between); or every `validation_every` epochs or
    # steps. `validation_every` 0 never validates, whatever `validation_by` says.
    validation_by: str = setting("budget", label="Validate by", group="validation", advanced=True,
                                 choices=VALIDATION_BY, help="budget: a share of the run's time, start to end")
    validation_budget: float = setting(0.1, label="Validation budget (share of time)", group="validation",
                                       advanced=True, help="0.1: at most 10% of the run")
    validation_every: int = setting(1, label="Validate every N", group="validation", advanced=True,
                                    help="epochs or steps, by 'Validate by'; 0: never")
    # prompt i uses seed validation_seed + i, the same every epoch
    validation_seed: int = setting(1234, label="Validation seed", group="validation", advanced=True,
                                   help="prompt i uses this seed + i, the same every epoch")
    # few: a validation shows progress, it is not a final render
    validation_steps: int = setting(12, label="Validation sampling steps", group="validation", advanced=True)
    validation_cfg: float = setting(0.0, label="Validation CFG scale", group="validation", advanced=True,
                                    help="0: the family's (CFG 7 for SD; FLUX.1-dev's distilled guidance 3.5)")
    # prompts drawn together in one call (their pictures decoded one at a time): together is faster, fewer hold less
    # memory (three SDXL prompts at 1024 px with CFG: ~4.8 GB of activations, one: ~1.6 GB)
    validation_batch: int = setting(0, label="Validation batch", group="validation", advanced=True,
                                    help="prompts drawn together; 0: all of them")
    checkpoint_every_steps: int = setting(0, label="Checkpoint every N steps", group="validation", advanced=True,
                                          help="> 0: also a checkpoint every this many steps inside an epoch")
    # Epochs between checkpoints and saved epoch weights (the epochs one can export); 0: at each epoch validated (by
    # budget or every N epochs), or every epoch when validation is off or by steps. Always after the last epoch and
    # when cancelled.
    save_every_epochs: int = setting(0, label="Save every N epochs", group="validation", advanced=True,
                                     help="0: at each validation")
    keep_epochs: int = setting(0, label="Keep last N epochs", group="validation", advanced=True, help="0: all")
    # write the final weights to models/ (a sweep's runs leave that to the cell one picks)
    export: bool = setting(True, label="Export the final weights", group="validation", advanced=True,
                           help="to models/ when the run ends")

    # ---- finetune and DreamBooth ----
    ema: str = setting("auto", label="EMA of the weights", group="EMA, CLIP and masks", advanced=True, choices=EMA_MODES,
                       methods=("dreambooth", "finetune"),
                       help="finetune/DreamBooth; auto: on for finetune; cpu: kept in RAM")
    # the average's decay, warmed up as diffusers' EMAModel: min(decay, (1 + n) / (10 + n))
    ema_decay: float = setting(0.9999, label="EMA decay", group="EMA, CLIP and masks", advanced=True,
                               methods=("dreambooth", "finetune"))

    # ---- validation scores and the collapse guard (every run; NaN is always caught) ----
    clip_model: str = setting("", label="CLIP for validation scores", group="EMA, CLIP and masks", advanced=True,
                              names="CLIP model",
                              help="CLIP score of each validation image with its prompt, e.g. "
                                   "openai/clip-vit-base-patch16; empty: none")
    validate_at_steps: list[int] = setting(default_factory=list, label="Also validate at steps", group="validation",
                                           advanced=True, split=r"[\s,]+",
                                           help="and keep the weights there (a sweep's cells)")
    # (a) stop when the loss, smoothed over this many steps, stays above guard_loss_factor x its running level for
    # as many steps (0 turns the loss signal off)
    guard_loss_factor: float = setting(3.0, label="Guard: loss jump (x running level)", group="guard", advanced=True,
                                       help="0: off")
    guard_loss_steps: int = setting(20, label="Guard: loss steps", group="guard", advanced=True,
                                    help="smoothed over, and stays up for, this many steps")
    # (b) stop when the validation images differ from one another less than guard_image_ratio x what the base
    # model's images for the same prompts and seeds do (near-identical pictures) AND every one of them is farther
    # than guard_image_left x the references' own distance from both its base picture and the dataset's pictures
    # (a collapse leaves both; a LoRA that learns its subject makes its pictures alike but nearer the dataset; 0:
    # sameness alone), or when their CLIP score falls more than guard_clip_drop (a fraction) below the base model's
    # for their prompts (0 turns the ratio or the drop off)
    guard_image_ratio: float = setting(0.5, label="Guard: image sameness (x base)", group="guard", advanced=True,
                                       help="0: off")
    guard_image_left: float = setting(1.5, label="Guard: pictures left base and data (x)", group="guard",
                                      advanced=True, help="and every picture this far from both; 0: sameness alone")
    guard_clip_drop: float = setting(0.3, label="Guard: CLIP drop (fraction)", group="guard", advanced=True,
                                     help="0: off")

    # ---- hardware ----
    # fp16 | bf16 autocast on a GPU (bf16 also works on a CPU); trained weights stay fp32. auto: decided at launch
    # for the device (studio/train/fit.py) and said in the run's log
    mixed_precision: str = setting("auto", label="Mixed precision", group="data and hardware", advanced=True,
                                   choices=PRECISIONS, help="auto: bf16 on a CUDA GPU (fp16 without bf16), none on "
                                                            "the CPU")
    # recompute each block's activations in the backward pass instead of keeping them: less memory, ~30% slower;
    # auto: on where the memory plan does not fit the GPU without it (a bool in an older run.json: on / off)
    gradient_checkpointing: str = setting("auto", label="Gradient checkpointing", group="data and hardware",
                                          advanced=True, choices=CHECKPOINTING,
                                          help="auto: on where the memory plan needs it")
    # adamw8bit: 8-bit AdamW when bitsandbytes and a CUDA GPU are present, else AdamW
    optimizer: str = setting("adamw", label="Optimizer", group="data and hardware", advanced=True, choices=OPTIMIZERS)
    # torch.compile the denoiser for the training steps (validation samples with the plain one). Off by default:
    # on builtin:tiny on a CPU its compile time outweighs what it saves (docs/training.md, "Speed")
    compile: bool = setting(False, label="torch.compile the denoiser", group="data and hardware", advanced=True,
                            help="slow first steps; pays on long runs where the compiler helps")
    device: str = ""  # "" means the studio's device (not a setting: the studio's --device says it)
    # Several GPUs: the cards to train on, one process each sharing every micro-batch of batch_size x cards; ""
    # takes every GPU when the device is auto or cuda, the one card it names otherwise (studio.claims.place)
    gpus: str = setting("", label="GPUs", group="data and hardware", advanced=True,
                        help="e.g. 0,1: one process per card, each batch_size pictures of every batch; empty: every "
                             "GPU (the card --device names, when it names one)")
    # Several processes on the CPU (gloo): the several-GPU path on a machine without GPUs
    processes: int = setting(0, label="CPU processes", group="data and hardware", advanced=True,
                             help="N > 1: N training processes on the CPU sharing every batch, as N GPUs would (how "
                                  "that path is tested without GPUs); 0: one")

    def __post_init__(self):
        if isinstance(self.gradient_checkpointing, bool):  # a run.json or a script from before "auto"
            self.gradient_checkpointing = "on" if self.gradient_checkpointing else "off"
        self.extra_subjects = [Subject(**s) if isinstance(s, dict) else s for s in self.extra_subjects or []]

    def check(self) -> "RunConfig":
        """Raise ValueError naming the first bad argument and its value."""
        self.name = check_name(self.name)
        if not (self.dataset or "").strip():
            raise ValueError("`dataset` is empty")
        self._check_subjects()
        if self.continue_from:
            check_name(self.continue_from, "continue_from")
            if self.method != "lora":
                raise ValueError(f"`continue_from` {self.continue_from!r} starts from a run's LoRA; method "
                                 f"{self.method} does not train one")
            if self.continue_from == self.name:
                raise ValueError(f"`continue_from` {self.continue_from!r} is this run: resume it instead")
        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {', '.join(METHODS)} but is {self.method!r}")
        if self.resolution and (self.resolution % 64 or not 64 <= self.resolution <= 4096):
            raise ValueError(f"`resolution` has to be divisible by 64 and between 64 and 4096 but is {self.resolution}")
        for name in ("repeats", "batch_size", "grad_accum", "rank", "vectors", "lr_cycles", "guard_loss_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1 but is {getattr(self, name)}")
        for name in ("epochs", "max_steps", "warmup_steps", "keep_tokens", "class_images", "validation_every",
                     "checkpoint_every_steps", "save_every_epochs", "keep_epochs", "blocks_to_swap", "processes",
                     "validation_batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must not be negative but is {getattr(self, name)}")
        if self.epochs == 0 and self.max_steps == 0:
            raise ValueError("`epochs` and `max_steps` are both 0: give one of them")
        for name in ("lr", "text_encoder_lr", "alpha", "min_snr_gamma", "noise_offset", "prior_loss_weight",
                     "guard_loss_factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must not be negative but is {getattr(self, name)}")
        if not 0 <= self.unmasked_weight <= 1:
            raise ValueError(f"`unmasked_weight` must be between 0 and 1 but is {self.unmasked_weight}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1) but is {self.dropout}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"`lr_scheduler` must be one of {', '.join(SCHEDULERS)} but is {self.lr_scheduler!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"`mixed_precision` must be one of {', '.join(PRECISIONS)} but is {self.mixed_precision!r}")
        if self.gradient_checkpointing not in CHECKPOINTING:
            raise ValueError(f"`gradient_checkpointing` must be one of {', '.join(CHECKPOINTING)} but is "
                             f"{self.gradient_checkpointing!r}")
        if self.lora_layers not in LORA_LAYERS:
            raise ValueError(f"`lora_layers` must be one of {', '.join(LORA_LAYERS)} but is {self.lora_layers!r}")
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"`timestep_sampling` must be one of {', '.join(TIMESTEP_SAMPLING)} but is "
                             f"{self.timestep_sampling!r}")
        if self.base_precision not in BASE_PRECISIONS:
            raise ValueError(f"`base_precision` must be one of {', '.join(BASE_PRECISIONS)} but is "
                             f"{self.base_precision!r}")
        if self.logit_std <= 0 or self.flow_shift < 0 or self.flux_guidance < 0:
            raise ValueError(f"`logit_std` must be positive and `flow_shift`, `flux_guidance` not negative, but they "
                             f"are {self.logit_std}, {self.flow_shift} and {self.flux_guidance}")
        if self.blocks_to_swap:
            self._check_block_swap()
        if self.max_sequence_length and not 16 <= self.max_sequence_length <= 512:
            raise ValueError(f"`max_sequence_length` must be 0 (automatic) or between 16 and 512 but is "
                             f"{self.max_sequence_length}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)} but is {self.optimizer!r}")
        if self.method == "textual-inversion" and not re.match(r"^[\w-]+$", self.token):
            raise ValueError(f"`trigger` must be one word for textual inversion but is {self.token!r}")
        if self.method == "textual-inversion" and not self.init_word.strip():
            raise ValueError("`init_word` is empty")
        if self.method == "dreambooth" and self.prior_preservation and not self.class_prompt.strip():
            raise ValueError("`class_prompt` is empty but `prior_preservation` is on")
        if self.method == "finetune" and self.prior_preservation:
            raise ValueError("`prior_preservation` is DreamBooth's (an instance and a class prompt); finetune trains "
                             "on the dataset's own captions: use method dreambooth, or turn it off")
        if self.ema not in EMA_MODES:
            raise ValueError(f"`ema` must be one of {', '.join(EMA_MODES)} but is {self.ema!r}")
        if self.ema in ("on", "cpu") and self.method not in WHOLE_MODEL:
            raise ValueError(f"`ema` {self.ema!r} averages a whole model's weights: it is for "
                             f"{' and '.join(WHOLE_MODEL)}, not {self.method}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"`ema_decay` must be between 0 and 1 but is {self.ema_decay}")
        if not 0 <= self.guard_image_ratio < 1 or not 0 <= self.guard_clip_drop < 1:
            raise ValueError(f"`guard_image_ratio` and `guard_clip_drop` must be in [0, 1) but are "
                             f"{self.guard_image_ratio} and {self.guard_clip_drop}")
        if self.guard_image_left < 0:
            raise ValueError(f"`guard_image_left` must not be negative but is {self.guard_image_left}")
        if self.guard_loss_factor and self.guard_loss_factor <= 1:
            raise ValueError(f"`guard_loss_factor` must be above 1 (or 0: off) but is {self.guard_loss_factor}")
        bad = [s for s in self.validate_at_steps if not isinstance(s, int) or s < 1]
        if bad:
            raise ValueError(f"`validate_at_steps` must hold steps of at least 1 but holds {bad[0]!r}")
        if not 0 <= self.validation_cfg <= 30:
            raise ValueError(f"`validation_cfg` must be between 0 and 30 but is {self.validation_cfg}")
        if self.validation_by not in VALIDATION_BY:
            raise ValueError(f"`validation_by` must be one of {', '.join(VALIDATION_BY)} but is {self.validation_by!r}")
        if not 0 < self.validation_budget <= 0.5:
            raise ValueError(f"`validation_budget` must be above 0 and at most 0.5 (a share of the run's time) but is "
                             f"{self.validation_budget}")
        if not 1 <= self.validation_steps <= 150:
            raise ValueError(f"`validation_steps` must be between 1 and 150 but is {self.validation_steps}")
        return self

    def _check_block_swap(self) -> None:
        """Block swapping keeps frozen weights on the CPU and brings them in as each block runs; what it cannot do is
        refused, naming the setting."""
        if self.method != "lora":
            raise ValueError(f"`blocks_to_swap` keeps frozen blocks on the CPU for a LoRA; {self.method} trains the "
                             f"whole transformer: set it to 0")
        if self.gradient_checkpointing == "off":  # (auto turns it on with block swapping: studio/train/fit.py)
            raise ValueError("`blocks_to_swap` needs `gradient_checkpointing`: without it every block's weights stay "
                             "on the GPU until the backward pass, and swapping saves nothing")
        if self.base_precision == "nf4":
            raise ValueError("`blocks_to_swap` with `base_precision` nf4: bitsandbytes puts the weights on the GPU as "
                             "it quantizes them; use fp8 or int8 with block swapping")
        if self.compile:
            raise ValueError("`blocks_to_swap` moves weights between the CPU and the GPU inside the step, which "
                             "torch.compile cannot follow: turn `compile` off")

    def _check_subjects(self) -> None:
        for i, s in enumerate(self.extra_subjects, start=2):
            if not isinstance(s, Subject):
                raise ValueError(f"`extra_subjects` must hold subjects (dataset, trigger, ...) but holds {s!r}")
            if not s.dataset.strip():
                raise ValueError(f"`extra_subjects`: subject {i} has no dataset")
            if not s.trigger.strip():
                raise ValueError(f"`extra_subjects`: subject {i} ({s.dataset!r}) has no trigger word: each subject "
                                 f"needs its own")
            if s.repeats < 0:
                raise ValueError(f"`extra_subjects`: subject {i} ({s.dataset!r}) has repeats {s.repeats}; 0 means "
                                 f"the run's")
        if self.extra_subjects and self.method == "finetune":
            raise ValueError("`extra_subjects` name subjects by trigger words; finetune trains on the dataset's own "
                             "captions: use lora, dreambooth or textual-inversion for several subjects")
        tokens = [s.trigger.strip().lower() for s in self.subjects]
        twice = sorted({t for t in tokens if tokens.count(t) > 1})
        if twice:
            raise ValueError(f"`trigger` {twice[0]!r} names two subjects: give each subject its own trigger word")
        for s in self.subjects:
            if self.method == "textual-inversion" and not re.match(r"^[\w-]+$", s.trigger.strip()):
                raise ValueError(f"`trigger` must be one word for textual inversion but is {s.trigger.strip()!r}")

    # ---- derived values ----

    @property
    def subjects(self) -> list[Subject]:
        """Every subject, the first from `dataset`/`trigger`, with the run's values filled in where one left them
        empty (trigger: the token; repeats; class word: `init_word`; class prompt)."""
        first = Subject(self.dataset, self.token, self.init_word, self.repeats, self.class_prompt)
        rest = [Subject(s.dataset.strip(), s.trigger.strip(), s.class_word.strip() or self.init_word,
                        s.repeats or self.repeats,
                        s.class_prompt.strip() or (f"a photo of a {s.class_word.strip()}" if s.class_word.strip()
                                                   else self.class_prompt))
                for s in self.extra_subjects]
        return [first, *rest]

    @property
    def token(self) -> str:
        """The trigger word as used in captions and prompts."""
        return (self.trigger or self.name).strip()

    @property
    def unet_lr(self) -> float:
        return self.lr or DEFAULT_LR[self.method]

    @property
    def whole_model(self) -> bool:
        """Whether the run trains the whole denoiser (DreamBooth, finetune) and exports a base model."""
        return self.method in WHOLE_MODEL

    @property
    def ema_device(self) -> str | None:
        """Where the EMA average lives: None (no EMA), "" (beside the weights) or "cpu"."""
        mode = {"auto": "on" if self.method == "finetune" else "off"}.get(self.ema, self.ema)
        return {"on": "", "cpu": "cpu"}.get(mode)

    @property
    def caption_trigger(self) -> str:
        """The word put in front of captions that lack it: the token, but for finetune only a trigger given."""
        return self.trigger.strip() if self.method == "finetune" else self.token

    def prompts(self) -> list[str]:
        """Validation prompts with `{trigger}` filled in; empty lines dropped. With several subjects, each prompt
        once per subject (subject by subject) and then one with all of them (prompt_subjects says whose)."""
        return [prompt for prompt, _ in self.subject_prompts()]

    def subject_prompts(self) -> list[tuple[str, int | None]]:
        """(prompt, index of the subject it shows; None for the one with every subject)."""
        lines = [p for p in self.validation_prompts if p.strip()]
        if not self.extra_subjects:
            return [(p.replace("{trigger}", self.token), 0) for p in lines]
        triggers = [s.trigger for s in self.subjects]
        out = [(p.replace("{trigger}", t), i) for i, t in enumerate(triggers) for p in lines if "{trigger}" in p]
        together = " and ".join(triggers)
        if lines:  # the first prompt with every subject: "a photo of A and B sitting in an office chair, ..."
            out.append((lines[0].replace("{trigger}", together) if "{trigger}" in lines[0] else
                        f"{together}, {lines[0]}", None))
        return out

    # ---- files ----

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"run config has unknown keys: {', '.join(unknown)}")
        if "validation_every" in data and "validation_by" not in data:
            data = {**data, "validation_by": "epochs"}  # a run.json from before budgets meant epochs
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read run config {path}: {e}") from e


def family_defaults(config: RunConfig, family, native: int = 0) -> RunConfig:
    """Fill what depends on the base family (resolution: its training side, 512 SD 1.x ... 1024 SDXL and FLUX.1, or
    `native`, the loaded model's own size, where smaller: 64 for the builtins) and refuse what the family cannot
    train, naming the setting (ModelFamily.check_training)."""
    if not config.resolution:
        config = replace(config, resolution=min(native or family.native_resolution, family.native_resolution))
    family.check_training(config)
    return config
