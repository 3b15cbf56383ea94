"""``flextok``: apple/ml-flextok's safetensors (``EPFL-VILAB/flextok_d18_d28_dfn`` and the other hub models).

SOURCE is the ``model.safetensors`` the publisher distributes (or its folder). FlexTok's ``save_safetensors``
stores the model's Hydra config in the safetensors metadata, each top-level entry (``vae``, ``encoder``,
``decoder``, ``regularizer``, ``pipeline``, ...) as the ``str`` of a Python dict; where the metadata lacks it, a
``config.json`` beside the file holding ``{"config": {...}}`` (what ``FlexTokFromHub``'s hub mixin writes) is
read instead. It is read here as plain data (``ast.literal_eval`` / JSON: literals only) and never instantiated: each module of the encoder's and decoder's
``module_dict`` is recognised by the class its ``_target_`` names and mapped to the settings of the registered
``flextok`` encoder and decoder and ``fsq`` quantizer; a class or setting they do not reproduce is refused with
its name. The VAE's architecture (diffusers' ``AutoencoderKL``: widths, levels, residual blocks) is read from its
tensors; its ``scaling_factor`` from the config. The VAE's encoder, held once, fills both the encoder's ``vae``
and the decoder's ``vae_encoder`` (the flow loss's targets), so ``discotok train init_from=DIR`` fine-tunes the
converted tokenizer on its pretrained VAE, frozen in both roles as FlexTok trains; the decoder's condition dropout
is the null condition's ``dropout_prob`` and its training times logit-normal unless the noise module says
``ln: False``. Loading is strict: a config that disagrees with the weights is refused with both shapes named.

What the converted tokenizer does that the reference leaves to its caller: ``encode`` uses the VAE posterior's
mean (the config's ``sample_posterior`` would draw a sample), so ids are deterministic; ``decode`` takes FlexTok's
README settings as defaults (20 steps, guidance 7.5 with normalised guidance, ``perform_norm_guidance=True``),
and ``timesteps=`` / ``guidance_scale=`` / ``seed=`` / ``noise=`` override them. Images are 256x256 as published
(any size whose latent grid the patch size divides encodes and decodes).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor

from discotok.convert.base import ConvertError, Converter, assemble, count, json_object
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

IMAGE_SIZE = 256
SECTIONS = ("vae", "encoder", "decoder", "regularizer")
PLUMBING = ("PerSampleOp", "SequenceUnpacker", "DictKeyFilter")
RESNET = {"norm1": "body.0", "conv1": "body.2", "norm2": "body.3", "conv2": "body.5", "conv_shortcut": "skip"}
ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
ACTIVATIONS = {"SiLU": "silu", "GELU": "gelu"}
DESCRIBE = "a FlexTok safetensors (model.safetensors whose metadata holds FlexTok's Hydra config)"


def read_metadata(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The parsed Hydra config entries of a FlexTok safetensors and its tensors, or ``ConvertError`` saying what
    was expected and found."""
    if not path.is_file():
        raise ConvertError(f"{path}: no such file (expected {DESCRIBE})")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConvertError(f"{path}: not a safetensors file ({first}); expected {DESCRIBE}") from None
    missing = [k for k in SECTIONS if k not in metadata]
    if missing:
        beside = hub_config(path.parent / "config.json")
        if beside is None:
            raise ConvertError(
                f"{path}: not a FlexTok checkpoint: its safetensors metadata has no {', '.join(missing)} "
                f"(found metadata keys {sorted(metadata)[:8] or 'none'}) and no config.json beside it holds FlexTok's "
                f"config; expected {DESCRIBE}")
        return beside, tensors
    config = {}
    for key, text in metadata.items():
        try:
            config[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            config[key] = text
    for key in SECTIONS:
        if not isinstance(config[key], dict):
            raise ConvertError(f"{path}: the metadata's {key!r} is not a config dict: {str(metadata[key])[:80]!r}")
    return config, tensors


def hub_config(path: Path) -> dict | None:
    """The FlexTok config a hub folder's ``config.json`` holds (``PyTorchModelHubMixin``'s ``{"config": {...}}``,
    plain JSON), or None."""
    obj = json_object(path) if path.is_file() else None
    config = obj.get("config") if obj is not None else None
    ok = isinstance(config, dict) and all(isinstance(config.get(k), dict) for k in SECTIONS)
    return config if ok else None


def target(spec: Any) -> str:
    """The class name a Hydra node's ``_target_`` names (its last dotted part), '' when there is none."""
    return str(spec.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(spec, dict) else ""


def modules(section: dict, role: str) -> dict[str, dict]:
    """The ``module_dict`` of a ``SequentialModuleDictWrapper`` config, in order."""
    if target(section) != "SequentialModuleDictWrapper" or not isinstance(section.get("module_dict"), dict):
        raise ConvertError(f"FlexTok's {role} is a {target(section) or 'config'} without a module_dict; "
                           f"expected a SequentialModuleDictWrapper")
    return dict(section["module_dict"])


def by_class(mods: dict[str, dict], role: str, known: set[str]) -> dict[str, list[str]]:
    """Module names per class; ``ConvertError`` naming a class discotok does not reproduce."""
    out: dict[str, list[str]] = {}
    for name, spec in mods.items():
        cls = target(spec)
        if cls not in known and cls not in PLUMBING:
            raise ConvertError(f"FlexTok's {role} module {name!r} is a {cls or 'config without _target_'}, "
                               f"which discotok does not reproduce (it reads: {', '.join(sorted(known))})")
        out.setdefault(cls, []).append(name)
    return out


def one(classes: dict[str, list[str]], cls: str, role: str) -> str:
    """The name of the one module of class ``cls``."""
    names = classes.get(cls, [])
    if len(names) != 1:
        raise ConvertError(f"FlexTok's {role} needs exactly one {cls}, found {len(names)} ({names})")
    return names[0]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConvertError(message)


def trunk_settings(spec: dict, role: str) -> dict:
    """``FlexTransformer``'s arguments as the ``transformer`` settings of our components."""
    for key, refused in (("drop", 0.0), ("drop_path_rate", 0.0), ("rope_forward_read_key", None),
                         ("score_mod_read_key", None)):
        check(spec.get(key, refused) in (refused, 0), f"FlexTok's {role} transformer sets {key}={spec.get(key)!r}, "
              f"which discotok does not reproduce")
    act = target(spec.get("act_layer", {"_target_": "torch.nn.SiLU"}))
    check(act in ACTIVATIONS, f"FlexTok's {role} transformer's act_layer {act!r} is not one of {sorted(ACTIVATIONS)}")
    norm = spec.get("norm_layer", {"_target_": "Fp32LayerNorm", "bias": False, "elementwise_affine": False})
    check(target(norm) in ("Fp32LayerNorm", "LayerNorm"),
          f"FlexTok's {role} transformer's norm_layer {target(norm)!r} is not a LayerNorm")
    return {"width": int(spec.get("dim", 768)), "depth": int(spec.get("depth", 12)),
            "head_dim": int(spec.get("head_dim", 64)), "mlp_ratio": float(spec.get("mlp_ratio", 4.0)),
            "gated_mlp": bool(spec.get("gated_mlp", True)), "activation": ACTIVATIONS[act],
            "qkv_bias": bool(spec.get("qkv_bias", False)), "proj_bias": bool(spec.get("proj_bias", False)),
            "mlp_bias": bool(spec.get("mlp_bias", False)), "qk_norm": bool(spec.get("qk_norm", True)),
            "norm": {"affine": bool(norm.get("elementwise_affine", True)), "bias": bool(norm.get("bias", True)),
                     "eps": float(norm.get("eps", 1e-5))}}


def square_patch(spec: dict, role: str) -> int:
    """A PatchEmbedder's patch side (FlexTok's are square, 2 x 2)."""
    sizes = [int(s) for s in spec["patch_sizes"]]
    check(len(sizes) == 2 and sizes[0] == sizes[1], f"FlexTok's {role} patches {sizes}: discotok reads square 2-D ones")
    return sizes[0]


def mask_causal(spec: dict, role: str) -> bool:
    """Whether a packer's mask is FlexTok's ``causal_last`` (else ``full``)."""
    mode = spec.get("mask_mode", "full")
    check(mode in ("full", "causal_last"), f"FlexTok's {role} sequence mask {mode!r} is not full or causal_last")
    return mode == "causal_last"


def vae_settings(state: dict[str, Tensor], vae: dict) -> dict:
    """The VAE's widths, levels and residual blocks read from AutoencoderKL's tensors, its scaling from the config."""
    p = "vae.vae.encoder."
    try:
        channels = int(state[p + "conv_in.weight"].shape[0])
        latent = int(state["vae.vae.post_quant_conv.weight"].shape[0])
    except KeyError as err:
        raise ConvertError(f"not a FlexTok checkpoint with an AutoencoderKL VAE: no tensor {err}") from None
    levels = count(state, re.escape(p) + r"down_blocks\.(\d+)\..+")
    widths = [int(state[f"{p}down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(levels)]
    check(all(w % channels == 0 for w in widths), f"VAE widths {widths} are not multiples of {channels}")
    check(vae.get("scaling_factor") is not None,
          "FlexTok's vae config has no scaling_factor (it would come from the hub VAE's own config, which the "
          "checkpoint does not hold)")
    check(int(vae.get("latent_channels", latent)) == latent, f"the vae config's latent_channels "
          f"{vae.get('latent_channels')} disagree with the weights' {latent} (post_quant_conv {latent}x{latent})")
    return {"channels": channels, "channel_mult": [w // channels for w in widths],
            "num_res_blocks": count(state, re.escape(p) + r"down_blocks\.0\.resnets\.(\d+)\..+"),
            "latent_channels": latent, "scaling_factor": float(vae["scaling_factor"])}


def encoder_config(mods: dict[str, dict], latent_dim: int, vae: dict) -> tuple[dict, dict[str, str]]:
    """Our ``flextok`` encoder's config and the module-name prefixes to rename, from the encoder's module_dict."""
    known = {"PatchEmbedder", "PositionalEmbeddingAdder", "Registers1D", "BlockWiseSequencePacker",
             "FlexTransformer", "LinearHead"}
    classes = by_class(mods, "encoder", known)
    patch, pos, reg, packer, trunk, head = (mods[one(classes, c, "encoder")] for c in (
        "PatchEmbedder", "PositionalEmbeddingAdder", "Registers1D", "BlockWiseSequencePacker", "FlexTransformer",
        "LinearHead"))
    check(pos.get("posemb_type", "sincos") == "sincos" and pos.get("posemb_scaling", "absolute") == "absolute",
          f"FlexTok's encoder positions {pos.get('posemb_type')} / {pos.get('posemb_scaling')}: discotok reads "
          f"sincos / absolute")
    check(reg.get("ordering_mode", "nested") == "nested", "FlexTok's encoder registers are not nested")
    check(not head.get("use_mup_readout") and head.get("adaLN_emb_read_key") is None,
          "FlexTok's encoder head uses a muP readout or adaLN, which discotok does not reproduce")
    check(list(packer.get("input_list_read_keys", [])) == [patch["patches_list_write_key"],
                                                          reg["registers_write_key"]],
          f"FlexTok's encoder packs {packer.get('input_list_read_keys')}; discotok reads [patches, registers]")
    n = int(reg["n_max"])
    check(int(reg.get("n_eval") or n) == n, "FlexTok's encoder evaluates with fewer registers than it has")
    config = {"name": "flextok", "latent_dim": latent_dim, "num_tokens": n, "image_size": [IMAGE_SIZE] * 2,
              "patch_size": square_patch(patch, "encoder"), "pos_grid": [int(s) for s in pos["max_sizes"]],
              "vae": vae, "transformer": trunk_settings(trunk, "encoder"), "causal": mask_causal(packer, "encoder"),
              "head_norm": head.get("norm_layer", "default") is not None}
    names = {one(classes, "PatchEmbedder", ""): "patch_embed", one(classes, "PositionalEmbeddingAdder", ""): "pos",
             one(classes, "Registers1D", ""): "registers", one(classes, "FlexTransformer", ""): "transformer",
             one(classes, "LinearHead", ""): "head"}
    return config, names


def decoder_config(mods: dict[str, dict], latent_dim: int, vae: dict, num_tokens: int) -> tuple[dict, dict[str, str]]:
    """Our ``flextok`` decoder's config and the module-name prefixes to rename, from the decoder's module_dict."""
    known = {"LinearLayer", "PositionalEmbeddingAdder", "MaskedNestedDropout", "LearnedNullCond", "ZeroNullCond",
             "PatchEmbedder", "BlockWiseSequencePacker", "TimestepEmbedder", "FlexTransformer", "ToPatchesLinearHead"}
    classes = by_class(mods, "decoder", known)
    order = list(mods)
    lin, drop, patch, packer, time, trunk, head = (one(classes, c, "decoder") for c in (
        "LinearLayer", "MaskedNestedDropout", "PatchEmbedder", "BlockWiseSequencePacker", "TimestepEmbedder",
        "FlexTransformer", "ToPatchesLinearHead"))
    nulls = classes.get("LearnedNullCond", []) + classes.get("ZeroNullCond", [])
    check(len(nulls) == 1, f"FlexTok's decoder needs one null condition module, found {nulls}")
    registers = mods[lin]["write_key"]
    posembs = classes.get("PositionalEmbeddingAdder", [])
    reg_pos = [p for p in posembs if mods[p]["read_key"] == registers]
    patch_pos = [p for p in posembs if mods[p]["read_key"] == mods[patch]["patches_list_write_key"]]
    check(len(reg_pos) == 1 and len(patch_pos) == 1, f"FlexTok's decoder positions {posembs}: expected one for the "
          f"registers and one for the patches")
    reg_pos, patch_pos, null = reg_pos[0], patch_pos[0], nulls[0]
    check(order.index(lin) < order.index(reg_pos) < order.index(drop) < order.index(null),
          f"FlexTok's decoder runs {order}; discotok reproduces projection, positions, nested dropout, then the "
          f"null condition")
    check(mods[reg_pos].get("posemb_type") in ("learnable_sum", "learnable_prod")
          and mods[patch_pos].get("posemb_type", "sincos") == "sincos",
          "FlexTok's decoder positions: discotok reads learned register positions and sincos patch positions")
    spec = mods[trunk]
    check(spec.get("adaLN_emb_read_key") == mods[time]["time_embedding_write_key"],
          "FlexTok's decoder transformer is not adaLN-modulated by the time embedding")
    check(not mods[time].get("temb_as_tokens", False), "FlexTok's decoder takes time as tokens; discotok reads adaLN")
    parts = int(spec.get("adaLN_expansion", 1)) if mods[packer].get("per_subseq_embs", False) else 1
    check(list(mods[packer].get("input_list_read_keys", [])) == [mods[patch]["patches_list_write_key"], registers],
          f"FlexTok's decoder packs {mods[packer].get('input_list_read_keys')}; discotok reads [patches, registers]")
    h = mods[head]
    check(not h.get("use_mup_readout") and h.get("adaLN_packing_fn_read_key") is None,
          "FlexTok's decoder head uses a muP readout or a packing function, which discotok does not reproduce")
    null_condition = "zero" if target(mods[null]) == "ZeroNullCond" else (
        "learned_token" if mods[null].get("replace_with_single_token") else "learned")
    check(int(mods[drop]["dim"]) == int(spec.get("dim", 768)),
          "nested dropout's mask token is not of the decoder's width")
    config = {"name": "flextok", "latent_dim": latent_dim, "num_tokens": num_tokens, "image_size": [IMAGE_SIZE] * 2,
              "patch_size": square_patch(mods[patch], "decoder"),
              "pos_grid": [int(s) for s in mods[patch_pos]["max_sizes"]], "vae": vae,
              "transformer": trunk_settings(spec, "decoder"), "causal": mask_causal(mods[packer], "decoder"),
              "adaln_parts": parts, "head_norm": h.get("norm_layer", "default") is not None,
              "head_adaln": h.get("adaLN_emb_read_key") is not None, "null_condition": null_condition,
              "time_frequencies": int(mods[time].get("frequency_embedding_size", 256)),
              "max_timestep": float(mods[time].get("max_timestep", 1000.0)), "timesteps": 20, "guidance_scale": 7.5,
              "guidance": "apg", "condition_dropout": float(mods[null].get("dropout_prob", 0.0))}
    names = {lin: "from_latents", reg_pos: "register_pos", drop: "mask", null: "null", patch: "patch_embed",
             patch_pos: "pos", time: "time", trunk: "transformer", head: "head"}
    return config, names


def time_sampling(noise: Any) -> str:
    """Our decoder's training time law from FlexTok's ``MinRFNoiseModule`` config: logit-normal with ``ln`` (its
    default), else uniform (its ``stratisfied`` and ``mode_scale`` variants of these draws are not reproduced)."""
    return "logit_normal" if not isinstance(noise, dict) or noise.get("ln", True) else "uniform"


def flextok_config(config: dict, state: dict[str, Tensor]) -> tuple[dict, dict[str, dict[str, str]]]:
    """Our tokenizer config and the module renames (per role) for a FlexTok config and its tensors."""
    reg = config["regularizer"]
    check(target(reg) == "FSQ", f"FlexTok's regularizer is a {target(reg) or 'config'}; discotok reads FSQ")
    levels = [int(v) for v in reg["levels"]]
    vae = vae_settings(state, config["vae"])
    enc, enc_names = encoder_config(modules(config["encoder"], "encoder"), len(levels), vae)
    dec, dec_names = decoder_config(modules(config["decoder"], "decoder"), len(levels), vae, enc["num_tokens"])
    dec["time_sampling"] = time_sampling(config.get("flow_matching_noise_module"))
    metadata = {"converted_from": "flextok", "posterior": "mean (encode is deterministic)",
                "sample_posterior": bool(config["vae"].get("sample_posterior", True))}
    ours = tokenizer_config(enc, {"name": "fsq", "dim": len(levels), "levels": levels}, dec,
                            image_size=[IMAGE_SIZE] * 2, metadata=metadata)
    return ours, {"encoder": enc_names, "decoder": dec_names}


def vae_name(rest: str, role: str) -> str:
    """Our name of one of AutoencoderKL's encoder / decoder tensors (``rest`` after ``encoder.`` / ``decoder.``)."""
    rest = re.sub(r"^(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv\.",
                  lambda m: f"conv_blocks.{m[2]}.{m[3]}sample.conv.", rest)
    rest = re.sub(r"^(down|up)_blocks\.(\d+)\.resnets\.", r"conv_blocks.\2.res.", rest)
    rest = re.sub(r"^mid_block\.resnets\.(\d)\.", lambda m: f"mid.{2 * int(m[1])}.", rest)
    rest = re.sub(r"^mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.",
                  lambda m: f"mid.1.{ATTN[m[1]]}.", rest)
    rest = re.sub(r"\.(norm1|conv1|norm2|conv2|conv_shortcut)\.", lambda m: f".{RESNET[m[1]]}.", rest)
    return rest.replace("conv_norm_out.", "norm_out.")


def rename(state: dict[str, Tensor], names: dict[str, dict[str, str]]) -> dict[str, Tensor]:
    """FlexTok's tensors under our names (linear attention projections of the VAE as 1x1 convolutions); the VAE's
    encoder (held once) fills both the encoder's ``vae`` and the decoder's ``vae_encoder`` (its flow targets)."""
    out: dict[str, Tensor] = {}
    for key, t in state.items():
        if m := re.fullmatch(r"vae\.vae\.(encoder|decoder)\.(.+)", key):
            ours, t = f"{m[1]}.vae.{vae_name(m[2], m[1])}", t
            t = t[..., None, None] if re.search(r"\.mid\.1\.(q|k|v|proj_out)\.weight$", ours) else t
        elif key.startswith("vae.vae.quant_conv."):
            ours = "encoder.vae.quant_conv." + key.rsplit(".", 1)[1]
        elif key.startswith("vae.vae.post_quant_conv."):
            ours = "decoder.post_quant_conv." + key.rsplit(".", 1)[1]
        elif m := re.fullmatch(r"(encoder|decoder)\.module_dict\.([^.]+)\.(.+)", key):
            role, part = m[1], names[m[1]].get(m[2])
            ours, t = module_name(role, part, m[3], t)
        else:
            ours = key
        out[ours] = t
        if ours.startswith("encoder.vae."):
            out["decoder.vae_encoder." + ours.removeprefix("encoder.vae.")] = t
    return out


MODULE_TENSORS = {
    ("patch_embed", "patch_proj.weight"): "patch_embed.weight", ("patch_embed", "patch_proj.bias"): "patch_embed.bias",
    ("pos", "posembs"): "pos_embed", ("registers", "registers"): "registers",
    ("head", "proj.weight"): "head.weight", ("head", "proj.bias"): "head.bias",
    ("head", "adaLN_modulation.1.weight"): "head_adaln.1.weight",
    ("head", "adaLN_modulation.1.bias"): "head_adaln.1.bias",
    ("from_latents", "proj.weight"): "from_latents.weight", ("from_latents", "proj.bias"): "from_latents.bias",
    ("register_pos", "posembs"): "register_pos_embed", ("mask", "dropout_mask_token"): "mask_token",
    ("null", "nullcond"): "null_token",
}


def module_name(role: str, part: str | None, rest: str, t: Tensor) -> tuple[str, Tensor]:
    """Our name (and layout) of tensor ``rest`` of the FlexTok module playing ``part`` in ``role``; the learned
    register positions (1, 1, width, N) become (N, width)."""
    if (part, rest) in MODULE_TENSORS:
        if part == "register_pos" and t.ndim == 4 and t.shape[:2] == (1, 1):
            t = t[0, 0].T
        return f"{role}.{MODULE_TENSORS[(part, rest)]}", t
    if part in ("transformer", "time"):
        return f"{role}.{'time_embed' if part == 'time' else part}.{rest}", t
    return f"{role}.{part or 'unknown'}.{rest}", t


@CONVERTERS.register("flextok")
class FlexTokConverter(Converter):
    """FlexTok's safetensors with its Hydra config in the metadata (read as data, never instantiated)."""

    source_patterns = ("model.safetensors",)
    describe = DESCRIBE

    @classmethod
    def recognises(cls, path: Path) -> bool:
        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, OSError):
            return False
        return all(k in metadata for k in SECTIONS) or hub_config(path.parent / "config.json") is not None

    def read(self, source: Path) -> Tokenizer:
        path = source / "model.safetensors" if source.is_dir() else source
        config, state = read_metadata(path)
        try:
            ours, names = flextok_config(config, state)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            if isinstance(err, ConvertError):
                raise ConvertError(f"{path}: {err}") from None
            raise ConvertError(f"{path}: FlexTok's config lacks or mistypes {err} (expected {DESCRIBE})") from None
        ignored = [k for k in state if k == "vae.logvar"]
        ours["metadata"]["ignored"] = ignored
        tensors = rename({k: v for k, v in state.items() if k not in ignored}, names)
        try:
            return assemble(ours, tensors, [r"encoder\.steps"])
        except ConvertError as err:
            raise ConvertError(f"{path}: {err}") from None
