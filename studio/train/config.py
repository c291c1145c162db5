"""The run config: one typed dataclass for every method, each setting declared once (its choices and the method's
defaults: studio/train/choices.py; its checks and the family's defaults: studio/train/config_checks.py; named
presets: studio/train/presets.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from studio.fields import setting
from studio.train.choices import (BASE_PRECISIONS, CHECKPOINTING, DEFAULT_LR, DEFAULT_VALIDATION_PROMPTS, EMA_MODES,
                                  LORA_LAYERS, METHODS, OPTIMIZERS, PRECISIONS, SCHEDULERS, TIMESTEP_SAMPLING,
                                  WHOLE_MODEL)
from studio.train.config_checks import check_config
from studio.train.schedule import VALIDATION_BY


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
    # budget or every N epochs), or ten times over the run when validation is off or by steps (schedule.py). Always
    # after the last epoch and when cancelled.
    save_every_epochs: int = setting(0, label="Save every N epochs", group="validation", advanced=True,
                                     help="0: at each validation (ten times over the run without one)")
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
        """Raise ValueError naming the first bad argument and its value (studio/train/config_checks.py)."""
        return check_config(self)

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
