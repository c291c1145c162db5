"""The UNet families' single files (A1111/Forge/ComfyUI layout) from diffusers modules, and the UNet's diffusers <->
original (LDM/SGM) module names that kohya's SDXL LoRAs use too."""

from __future__ import annotations

_RESNET = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
           ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection."))
_VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))


def _layers(config) -> int:
    lpb = config.layers_per_block
    return lpb if isinstance(lpb, int) else lpb[0]


def unet_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, original prefix) of every UNet block, from the UNet's config (any depth and width)."""
    n, layers = len(config.block_out_channels), _layers(config)
    pairs = [("conv_in.", "input_blocks.0.0."), ("time_embedding.linear_1.", "time_embed.0."),
             ("time_embedding.linear_2.", "time_embed.2."), ("add_embedding.linear_1.", "label_emb.0.0."),
             ("add_embedding.linear_2.", "label_emb.0.2."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
             ("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
             ("mid_block.resnets.1.", "middle_block.2.")]
    for i in range(n):
        for j in range(layers):
            k = 1 + i * (layers + 1) + j
            pairs += [(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{k}.0."),
                      (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{k}.1.")]
        if i < n - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (layers + 1)}.0.op."))
        for j in range(layers + 1):
            k = i * (layers + 1) + j
            pairs += [(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{k}.0."),
                      (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{k}.1.")]
        if i < n - 1:
            slot = 2 if "CrossAttn" in config.up_block_types[i] else 1
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (layers + 1) + layers}.{slot}."))
    return pairs


def unet_name_to_original(name: str, config) -> str:
    """`down_blocks.1.attentions.0.proj_in.weight` -> `input_blocks.4.1.proj_in.weight` (for this UNet's layout)."""
    for ours, theirs in sorted(unet_prefixes(config), key=lambda p: -len(p[0])):
        if name.startswith(ours):
            rest = name[len(ours):]
            if ".resnets." in ours:
                for a, b in _RESNET:
                    if rest.startswith(a):
                        rest = b + rest[len(a):]
                        break
            return theirs + rest
    raise ValueError(f"UNet key {name!r} has no original-layout name (unknown block)")


def vae_to_original(state: dict, config) -> dict:
    n = len(config.block_out_channels)
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid_block.resnets.{k}.", f"{part}.mid.block_{k + 1}.") for k in range(2)]
        pairs.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
    for i in range(n):
        pairs += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(4)]
        pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv."))
        pairs += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}.") for j in range(4)]
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{n - 1 - i}.upsample.conv."))
    pairs.sort(key=lambda p: -len(p[0]))
    out = {}
    for name, tensor in state.items():
        new = name
        for ours, theirs in pairs:
            if name.startswith(ours):
                rest = name[len(ours):]
                if ours.endswith("attentions.0."):
                    for a, b in _VAE_ATTN:
                        if rest.startswith(a):
                            rest = b + rest[len(a):]
                    if tensor.ndim == 2:  # the original attention uses 1x1 convolutions
                        tensor = tensor[:, :, None, None]
                rest = rest.replace("conv_shortcut.", "nin_shortcut.")
                new = theirs + rest
                break
        out[new] = tensor
    return out


def _openclip(state: dict) -> dict:
    """A transformers CLIPTextModelWithProjection state -> OpenCLIP's names (SDXL's second text encoder)."""
    import torch

    out, qkv = {}, {}
    for name, tensor in state.items():
        if name.endswith("position_ids"):
            continue
        if name == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()
            continue
        name = name.removeprefix("text_model.")
        if name.startswith("encoder.layers."):
            layer, rest = name[len("encoder.layers."):].split(".", 1)
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                qkv.setdefault((layer, rest.split(".")[-1]), {})[rest.split(".")[1]] = tensor
                continue
            rest = (rest.replace("self_attn.out_proj.", "attn.out_proj.").replace("layer_norm1.", "ln_1.")
                    .replace("layer_norm2.", "ln_2.").replace("mlp.fc1.", "mlp.c_fc.").replace("mlp.fc2.", "mlp.c_proj."))
            out[f"transformer.resblocks.{layer}.{rest}"] = tensor
        elif name == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = tensor
        elif name == "embeddings.position_embedding.weight":
            out["positional_embedding"] = tensor
        elif name.startswith("final_layer_norm."):
            out[name.replace("final_layer_norm.", "ln_final.")] = tensor
        else:
            raise ValueError(f"text encoder key {name!r} has no OpenCLIP name")
    for (layer, kind), parts in qkv.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q_proj"], parts["k_proj"],
                                                                               parts["v_proj"]])
    return out


def sd_single_file_state(unet, vae, text_encoders: list) -> dict:
    """An SD 1.x/2.x or SDXL pipeline's weights in the single-file layout A1111, Forge and ComfyUI load: the UNet,
    the VAE and one text encoder (SD 1.x) or two (SDXL: CLIP-L, then OpenCLIP bigG)."""
    state = {}
    for name, tensor in unet.state_dict().items():
        state["model.diffusion_model." + unet_name_to_original(name, unet.config)] = tensor
    for name, tensor in vae_to_original(vae.state_dict(), vae.config).items():
        state["first_stage_model." + name] = tensor
    first = {(k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k): v  # transformers 5
             for k, v in text_encoders[0].state_dict().items() if not k.endswith("position_ids")}
    if len(text_encoders) > 1:
        state.update({"conditioner.embedders.0.transformer." + k: v for k, v in first.items()})
        state.update({"conditioner.embedders.1.model." + k: v for k, v in _openclip(text_encoders[1].state_dict()).items()})
    else:
        state.update({"cond_stage_model.transformer." + k: v for k, v in first.items()})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def prediction_type(checkpoint) -> str | None:
    """What an SD file says it predicts: "epsilon", "v" or "v-zsnr" (v with zero terminal SNR); None when nothing
    says. First a yaml of the same name beside it (A1111's and Forge's convention: `parameterization: "v"`, or SGM's
    VScaling denoiser), then ComfyUI's and Forge's marker tensors (`v_pred`, with `ztsnr`)."""
    zsnr = "ztsnr" in checkpoint.shapes
    yaml_path = checkpoint.path.with_suffix(".yaml")
    if yaml_path.is_file():
        import yaml

        try:
            params = ((yaml.safe_load(yaml_path.read_text()) or {}).get("model") or {}).get("params") or {}
        except (yaml.YAMLError, AttributeError) as e:
            raise ValueError(f"the config beside the checkpoint, {yaml_path}, is not an A1111 model yaml ({e})") from e
        scaling = ((((params.get("denoiser_config") or {}).get("params") or {}).get("scaling_config") or {})
                   .get("target", ""))
        v = params.get("parameterization") == "v" or scaling.endswith("VScaling")
        return ("v-zsnr" if zsnr else "v") if v else "epsilon"
    if "v_pred" in checkpoint.shapes:
        return "v-zsnr" if zsnr else "v"
    return None
