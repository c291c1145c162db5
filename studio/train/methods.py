"""What each method trains: LoRA adapters (peft; the family names their targets), the whole denoiser (DreamBooth and
finetune: UNet, or FLUX's transformer; finetune with an EMA average), or a new token's embedding (TI).

Each method names its trainable parameters, gives and takes their state (checkpoints, epoch weights, export),
may fix things up after an optimizer step, and says which weights to sample and export with (`averaged`).
"""

from __future__ import annotations

import re
from contextlib import nullcontext

from studio.train.config import RunConfig
from studio.train.parts import Parts

class LoraMethod:
    ema = None  # (a whole model's average only)

    def __init__(self, parts: Parts, config: RunConfig):
        import torch
        from peft import LoraConfig

        self.parts, self.config = parts, config
        self.trains_text = config.text_encoder_lr > 0
        self._tensors = None  # (state()'s parameters, found once)
        targets = parts.family.lora_targets(config.lora_layers)
        if self.trains_text and targets.text is None:
            raise ValueError(f"`text_encoder_lr` must be 0 for {parts.family.label}: its text encoders take no LoRA")
        torch.manual_seed(config.seed)  # peft draws lora_A from the global generator
        parts.denoiser.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                              init_lora_weights="gaussian", target_modules=targets.denoiser))
        if self.trains_text:
            for encoder in parts.text_encoders:
                encoder.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                               init_lora_weights="gaussian", target_modules=targets.text))

    def modules(self) -> dict:
        return _modules(self.parts, self.trains_text)

    def param_groups(self) -> list[dict]:
        groups = [{"params": [p for p in self.parts.denoiser.parameters() if p.requires_grad],
                   "lr": self.config.unet_lr}]
        if self.trains_text:
            params = [p for e in self.parts.text_encoders for p in e.parameters() if p.requires_grad]
            groups.append({"params": params, "lr": self.config.text_encoder_lr})
        return groups

    def state(self) -> dict:
        """diffusers' LoRA layout: `unet.<module>.lora_A.weight`, `text_encoder.<module>.lora_B.weight`, ..."""
        return {key: tensor.detach().clone().contiguous() for key, tensor in self._state_tensors().items()}

    def _state_tensors(self) -> dict:
        """The tensors state() copies, by key. peft's get_peft_model_state_dict walks the whole model's state_dict
        on every call (a checkpoint and an epoch's weights each ask: 6 s of a 70 s tiny run); the keys and the
        parameters they name do not change during a run, so they are found once, each value peft returns matched
        to the parameter whose storage it is. A value that is no parameter (a layout peft builds) keeps the walk."""
        from peft.utils import get_peft_model_state_dict

        if self._tensors is not None:
            return self._tensors
        found, all_parameters = {}, True
        for prefix, module in self.modules().items():
            params = {p.data_ptr(): p for p in module.parameters()}
            for k, v in get_peft_model_state_dict(module).items():
                p = params.get(v.data_ptr())
                all_parameters &= p is not None and p.shape == v.shape
                found[f"{prefix}.{k}"] = v if p is None else p
        if all_parameters:
            self._tensors = found
        return found

    def load_state(self, state: dict) -> None:
        from peft.utils import set_peft_model_state_dict

        self._tensors = None  # (found again: a load may put new parameters in place of the ones found)
        for prefix, module in self.modules().items():
            part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
            set_peft_model_state_dict(module, part)

    def caption(self, caption: str) -> str:
        return caption

    def after_step(self) -> None:
        return None

    def averaged(self):
        """The weights to sample and export with: the trained ones."""
        return nullcontext()


class WholeModelMethod:
    """DreamBooth and finetune: every weight of the denoiser (and the text encoders with a text-encoder lr) trains;
    with `ema`, an average of them (train/ema.py) is what validation sees and the export holds."""

    def __init__(self, parts: Parts, config: RunConfig):
        from studio.train.ema import EmaWeights

        self.parts, self.config = parts, config
        self.trains_text = config.text_encoder_lr > 0
        parts.denoiser.requires_grad_(True)
        if self.trains_text:
            for encoder in parts.text_encoders:
                encoder.requires_grad_(True)
        self.ema = None
        if config.ema_device is not None:
            params = {f"{prefix}.{k}": p for prefix, module in self.modules().items()
                      for k, p in module.named_parameters()}
            self.ema = EmaWeights(params, config.ema_decay, config.ema_device)

    def modules(self) -> dict:
        return _modules(self.parts, self.trains_text)

    def param_groups(self) -> list[dict]:
        groups = [{"params": list(self.parts.denoiser.parameters()), "lr": self.config.unet_lr}]
        if self.trains_text:
            groups.append({"params": [p for e in self.parts.text_encoders for p in e.parameters()],
                           "lr": self.config.text_encoder_lr})
        return groups

    def model_state(self) -> dict:
        """The modules' weights as they are now (the average while `averaged` holds): `unet.<key>`, ..."""
        return {f"{prefix}.{k}": v.detach().clone().contiguous()
                for prefix, module in self.modules().items() for k, v in module.state_dict().items()}

    def state(self) -> dict:
        """For a checkpoint: the live weights and, with EMA, the average (`ema.<key>`) and its update count."""
        return {**self.model_state(), **(self.ema.state() if self.ema is not None else {})}

    def load_state(self, state: dict) -> None:
        for prefix, module in self.modules().items():
            module.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
        if self.ema is not None:
            if "ema.__updates__" not in state:
                raise ValueError("the checkpoint has no EMA average but this run keeps one (`ema`): resume with the "
                                 "ema setting it was started with")
            self.ema.load_state(state)

    def caption(self, caption: str) -> str:
        return caption

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update()

    def averaged(self):
        """The EMA average in the model while sampling or exporting (the trained weights without EMA)."""
        return self.ema.swapped_in() if self.ema is not None else nullcontext()



class TextualInversionMethod:
    """A new token per subject (`vectors` of them each: tok, tok_1, ... as diffusers names them) starting from the
    subject's class word (`init_word` for the first); every other row of the embedding table is put back after each
    step, so only the tokens learn. Their vectors are kept subject after subject (`vectors` rows each)."""

    trains_text = True
    ema = None

    def __init__(self, parts: Parts, config: RunConfig):
        import torch

        self.parts, self.config = parts, config
        subjects = config.subjects if config.extra_subjects else [None]
        self.words = [config.token.lower()] + [s.trigger.lower() for s in subjects[1:]]  # CLIP lower-cases prompts
        self.token = self.words[0]
        self.by_word = {w: [w] + [f"{w}_{i}" for i in range(1, config.vectors)] for w in self.words}
        self.tokens = [t for w in self.words for t in self.by_word[w]]
        inits = [config.init_word] + [s.class_word for s in subjects[1:]]
        self.ids, self.frozen = [], []
        for tokenizer, encoder in zip(parts.tokenizers, parts.text_encoders):
            starts = []
            for init in inits:
                found = tokenizer.encode(init, add_special_tokens=False)
                if not found:
                    raise ValueError(f"`init_word` {init!r} gives no tokens")
                starts.append(found)
            before = tokenizer.get_vocab()
            if tokenizer.add_tokens(self.tokens) != len(self.tokens):
                taken = [t for t in self.tokens if t in before] or self.words
                raise ValueError(f"`trigger` {taken[0]!r} is already a word of the base's tokenizer; pick a new word")
            encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            table = encoder.get_input_embeddings().weight
            with torch.no_grad():
                for word, init in zip(self.words, starts):
                    start = table[init].mean(0)  # (D,): the init word's embedding (mean when it is several tokens)
                    for i in tokenizer.convert_tokens_to_ids(self.by_word[word]):
                        table[i] = start
            table.requires_grad_(True)
            self.ids.append(torch.tensor(tokenizer.convert_tokens_to_ids(self.tokens)))
            self.frozen.append(table.detach().clone())

    def modules(self) -> dict:
        return dict(zip(self.parts.family.text_encoder_names, self.parts.text_encoders))

    def param_groups(self) -> list[dict]:
        return [{"params": [e.get_input_embeddings().weight for e in self.parts.text_encoders],
                 "lr": self.config.unet_lr, "weight_decay": 0.0}]

    def vectors(self) -> list:
        """The learnt vectors per text encoder: (vectors x subjects, D) each, subject after subject."""
        return [e.get_input_embeddings().weight[ids].detach().clone()
                for e, ids in zip(self.parts.text_encoders, self.ids)]

    def subject_vectors(self) -> list[tuple[str, list]]:
        """(token, its vectors per text encoder) for each subject."""
        n, every = self.config.vectors, self.vectors()
        return [(w, [v[k * n:(k + 1) * n] for v in every]) for k, w in enumerate(self.words)]

    def state(self) -> dict:
        return {f"emb.{i}": v.contiguous() for i, v in enumerate(self.vectors())}

    def load_state(self, state: dict) -> None:
        import torch

        with torch.no_grad():
            for i, (encoder, ids) in enumerate(zip(self.parts.text_encoders, self.ids)):
                encoder.get_input_embeddings().weight[ids] = state[f"emb.{i}"].to(encoder.device)

    def caption(self, caption: str) -> str:
        """Each trigger word becomes its token sequence (tok tok_1 ...)."""
        for word in self.words:
            caption = re.sub(rf"\b{re.escape(word)}\b", " ".join(self.by_word[word]), caption, flags=re.IGNORECASE)
        return caption

    def after_step(self) -> None:
        import torch

        with torch.no_grad():
            for encoder, ids, frozen in zip(self.parts.text_encoders, self.ids, self.frozen):
                table = encoder.get_input_embeddings().weight
                keep = torch.ones(table.shape[0], dtype=torch.bool)
                keep[ids] = False
                table[keep] = frozen[keep].to(table.device)

    def averaged(self):
        return nullcontext()


def _modules(parts: Parts, trains_text: bool) -> dict:
    """The trained modules by the pipeline attribute that holds them (the prefix of their keys in saved states)."""
    found = {parts.family.denoiser_name: parts.denoiser}
    if trains_text:
        found.update(zip(parts.family.text_encoder_names, parts.text_encoders))
    return found


def make_method(parts: Parts, config: RunConfig):
    cls = {"lora": LoraMethod, "dreambooth": WholeModelMethod, "finetune": WholeModelMethod,
           "textual-inversion": TextualInversionMethod}
    return cls[config.method](parts, config)
